//go:build tools

// Package tools only records which commands this module builds, so `go mod tidy` keeps their
// dependencies in go.sum. Built with: go build -o DIR k8s.io/kubernetes/cmd/<name>
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
