//go:build tools

// Package tools only records the command this module builds (the etcd server), so
// `go mod tidy` keeps its dependencies in go.sum. Built with: go build -o DIR go.etcd.io/etcd/server/v3
package tools

import _ "go.etcd.io/etcd/server/v3"
