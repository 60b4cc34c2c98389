// Package walk holds the reliability walk of the embedded default: a
// model-based random walk (walk_test.go) that drives the prober through
// seeded sequences of maintenance requests, kills of the whole process
// (kill -9, restart on the same data dir), crashes of NATS nodes and
// concurrent JetStream writers, and checks after every step that the prober
// stored what the model expects, refused what would cost a Raft group its
// quorum, drove every node to its desired phase and lost no acknowledged
// message. The package has no code of its own: it is a test harness.
package walk
