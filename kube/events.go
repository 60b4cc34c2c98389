package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// EventSource is the component name the prober's Events carry.
const EventSource = "prober"

// maxEventMessage is the longest message an Event keeps (the API server
// refuses longer ones); a longer one is cut with an ellipsis.
const maxEventMessage = 1024

// PodEvents records Kubernetes Events on the prober's own pod, so that
// what happened to it is seen where operators look first (`kubectl
// describe pod`, `kubectl get events`), also after the pod is gone. Each
// call writes one Event synchronously: the events it records come right
// before a shutdown, when an asynchronous recorder could lose them.
type PodEvents struct {
	// Pods reads the pod once, for its UID: `kubectl describe` matches
	// Events by UID. Events writes them.
	Pods   corev1client.PodInterface
	Events corev1client.EventInterface
	// Pod is the pod's name; Namespace its namespace.
	Pod, Namespace string
	// Host is the node the pod runs on, when known (Event.Source.Host).
	Host string
}

// Record writes an Event of type eventType (corev1.EventTypeNormal or
// corev1.EventTypeWarning) with reason (CamelCase) and message on the pod.
func (e *PodEvents) Record(ctx context.Context, eventType, reason, message string) error {
	ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: e.Namespace, Name: e.Pod}
	if p, err := e.Pods.Get(ctx, e.Pod, metav1.GetOptions{}); err == nil {
		ref.UID = p.UID
		ref.ResourceVersion = p.ResourceVersion
		if e.Host == "" {
			e.Host = p.Spec.NodeName
		}
	}
	if len(message) > maxEventMessage {
		message = message[:maxEventMessage-3] + "..."
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: e.Pod + ".",
			Namespace:    e.Namespace,
		},
		InvolvedObject:      ref,
		Reason:              reason,
		Message:             message,
		Type:                eventType,
		Source:              corev1.EventSource{Component: EventSource, Host: e.Host},
		ReportingController: EventSource,
		ReportingInstance:   EventSource + "-" + e.Pod,
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
	}
	if _, err := e.Events.Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("record event %s on pod %s: %w", reason, e.Pod, err)
	}
	return nil
}
