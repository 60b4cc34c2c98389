// Package kube owns everything the prober does with the Kubernetes API: the
// maintenance state kept in a ConfigMap (a maintenance.Store, written by
// compare-and-swap on the resourceVersion and followed by client-go's
// Reflector), and the discovery of the NATS pods (a client-go informer over
// a label selector). The callers' authentication and authorisation
// (TokenReview, SubjectAccessReview) stay with the HTTP middleware in
// package prober, their only user.
package kube
