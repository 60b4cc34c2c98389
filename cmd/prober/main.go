// Command prober makes planned maintenance of a NATS JetStream cluster safe.
// Run without arguments (or with "embedded") it starts the embedded default:
// an in-process 3-node JetStream cluster, a file-backed store and the API on
// :8889. Named kubectl-prober it is the kubectl plugin "kubectl prober".
package main

import "os"

func main() { os.Exit(Dispatch(os.Args[0], os.Args[1:], os.Stdout, os.Stderr)) }
