// Package app composes the prober's applications from its parts: the
// embedded default (an in-process NATS cluster, the file store, gate
// fences) and the Kubernetes sidecar (the ConfigMap store, pod discovery,
// the kernel fence), each with its collector, reconcilers and API server
// run in one group with one shutdown budget. It is the only package that
// knows every other; cmd/prober turns flags into its values.
package app
