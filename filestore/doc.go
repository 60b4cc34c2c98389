// Package filestore is the maintenance.Store of the embedded default and of
// installs without Kubernetes: the document in one JSON file, replaced
// atomically on every write and compare-and-swapped on a write counter, so
// that two processes sharing the file lose no update either.
package filestore
