// Package maintenance is the domain of the prober: who is in maintenance,
// why and until when (the desired State, kept in a Store), the Phase each
// node has reached (its observed status), the safety rule that refuses a
// request which would cost a Raft group its quorum, and the Reconciler that
// drives one node from observed to desired. It does not know about HTTP.
package maintenance
