package app

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prober-dev/prober/prober"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunGroup(t *testing.T) {
	boom := errors.New("boom")
	untilDone := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	tests := []struct {
		name     string
		parts    map[string]func(context.Context) error
		cancel   bool // end the parent instead of waiting for a failure
		wantErr  error
		wantName string
	}{
		{name: "parent ends: nil", parts: map[string]func(context.Context) error{"a": untilDone, "b": untilDone}, cancel: true},
		{name: "a failure ends the group", parts: map[string]func(context.Context) error{
			"a": untilDone, "b": func(context.Context) error { return boom },
		}, wantErr: boom, wantName: "b: "},
		{name: "a part that ends without error does not end the group", parts: map[string]func(context.Context) error{
			"a": untilDone, "b": func(context.Context) error { return nil },
		}, cancel: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			g := newRunGroup(parent)
			for name, run := range tt.parts {
				g.Go(name, run)
			}
			stopped := make(chan struct{})
			done := make(chan error, 1)
			go func() { done <- g.Wait(parent, func() { close(stopped) }) }()
			if tt.cancel {
				cancel()
			}
			select {
			case err := <-done:
				if tt.wantErr == nil {
					assert.NoError(t, err)
				} else {
					assert.ErrorIs(t, err, tt.wantErr)
					assert.Contains(t, err.Error(), tt.wantName)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Wait did not return")
			}
			select {
			case <-stopped:
			default:
				t.Fatal("stop was not called")
			}
		})
	}
}

// TestRunGroupServerFailureEndsRun checks that a server whose Serve fails
// after Open ends its group with the error instead of only logging it.
func TestRunGroupServerFailureEndsRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := prober.NewServer(prober.Options{Listener: ln, Logger: zerolog.Nop()})
	require.NoError(t, srv.Open())
	defer func() { _ = srv.Close(context.Background()) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := newRunGroup(ctx)
	g.Go("http server", srv.Wait)
	// Break the listener under the server: Serve returns an error.
	require.NoError(t, ln.Close())
	done := make(chan error, 1)
	go func() { done <- g.Wait(ctx, nil) }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, net.ErrClosed)
		assert.Contains(t, err.Error(), "http server")
	case <-time.After(10 * time.Second):
		t.Fatal("a failed server must end the group")
	}
}
