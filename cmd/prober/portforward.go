package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/klog/v2"
)

// portForward opens a port-forward from a free port on 127.0.0.1 to port
// of pod, as `kubectl port-forward` does (websockets, else SPDY), and
// returns once it listens. Errors of the forwarded connections go to
// stderr, one line each. The kubelet connects to the port on the pod's
// loopback interface, so the prober API trusts the caller without a token.
func portForward(ctx context.Context, cs kubernetes.Interface, cfg *rest.Config, pod *corev1.Pod, port int, stderr io.Writer) (*forwarding, error) {
	where := fmt.Sprintf("port-forward to %s/%s:%d", pod.Namespace, pod.Name, port)
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})

	log := logr.New(&lineSink{w: stderr, prefix: PluginName + ": " + where + ": "})
	fctx, cancel := context.WithCancel(klog.NewContext(context.Background(), log))
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(fctx, dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, ready, nil, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("%s: %s", where, forwardError(err))
	case <-ctx.Done():
		cancel()
		return nil, fmt.Errorf("%s: %w", where, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		cancel()
		return nil, fmt.Errorf("%s: no local port: %v", where, err)
	}
	lost := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		err := <-done
		if fctx.Err() == nil {
			lost <- fmt.Errorf("%s lost: %s", where, forwardError(err))
		}
	}()
	return &forwarding{
		URL:  fmt.Sprintf("http://127.0.0.1:%d", ports[0].Local),
		lost: lost,
		stop: func() { cancel(); <-ended },
	}, nil
}

// forwardError makes the error of a failed or lost forward one line
// without client-go's wrapping.
func forwardError(err error) string {
	if err == nil || errors.Is(err, portforward.ErrLostConnectionToPod) {
		return "the connection to the pod was lost (the pod went away?)"
	}
	msg := strings.TrimPrefix(err.Error(), "error upgrading connection: ")
	return strings.Join(strings.Fields(msg), " ")
}

// lineSink is a logr sink that writes errors as one line each to w, after
// prefix, and drops the rest: client-go's port-forward reports the errors
// of single connections (the pod refused the port, say) through it.
type lineSink struct {
	w      io.Writer
	prefix string
}

func (s *lineSink) Init(logr.RuntimeInfo)          {}
func (s *lineSink) Enabled(int) bool               { return false }
func (s *lineSink) Info(int, string, ...any)       {}
func (s *lineSink) WithValues(...any) logr.LogSink { return s }
func (s *lineSink) WithName(string) logr.LogSink   { return s }
func (s *lineSink) Error(err error, msg string, _ ...any) {
	if msg != "" {
		msg = strings.ToLower(msg[:1]) + msg[1:] + ": "
	}
	fmt.Fprintf(s.w, "%s%s%s\n", s.prefix, msg, strings.Join(strings.Fields(fmt.Sprint(err)), " "))
}
