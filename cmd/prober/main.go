// Command prober makes planned maintenance of a NATS JetStream cluster safe.
// Run without arguments (or with "embedded") it starts the embedded default:
// an in-process 3-node JetStream cluster, a file-backed store and the API on
// :8889.
package main

import "os"

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }
