//go:build tools

// Package tools only records the command this module builds, so `go mod tidy` keeps its
// dependencies in go.sum. Built with: go build -o DIR sigs.k8s.io/metrics-server/cmd/metrics-server
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
