package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// PodRestarter restarts a NATS pod for a rolling maintenance by deleting
// it: its StatefulSet makes it again, with the same name. It implements
// maintenance.Restarter.
type PodRestarter struct {
	// Pods is clientset.CoreV1().Pods(namespace).
	Pods corev1client.PodInterface
}

// Restart deletes pod while it is an instance created before since (the
// delete is made on its UID, so a newer instance is never deleted by
// mistake), and reports back once an instance created after since runs
// with every container started. A creation time has a resolution of a
// second: an instance created in the very second of since counts as old
// and is restarted once more, which is safe, the pod being in maintenance.
func (r *PodRestarter) Restart(ctx context.Context, pod string, since time.Time) (bool, string, error) {
	p, err := r.Pods.Get(ctx, pod, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, "waiting for the pod to be created again", nil
	case err != nil:
		return false, "", fmt.Errorf("get pod %s: %w", pod, err)
	}
	if p.DeletionTimestamp != nil {
		return false, "waiting for the pod to terminate", nil
	}
	if !p.CreationTimestamp.Time.After(since.Truncate(time.Second)) {
		uid := p.UID
		err := r.Pods.Delete(ctx, pod, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, "", fmt.Errorf("delete pod %s: %w", pod, err)
		}
		return false, "pod deleted, waiting for it to be created again", nil
	}
	if p.Status.Phase != corev1.PodRunning {
		return false, fmt.Sprintf("the new pod is %s", p.Status.Phase), nil
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Started == nil || !*cs.Started {
			return false, fmt.Sprintf("container %s of the new pod has not started", cs.Name), nil
		}
	}
	return true, "", nil
}

// Restarter returns a PodRestarter over the pods the discovery follows.
func (d *PodDiscovery) Restarter() *PodRestarter { return &PodRestarter{Pods: d.pods} }
