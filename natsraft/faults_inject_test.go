package natsraft

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Fault injection: ways to start an embedded node wrong, as deployments
// manage to on their own, so that tests and demos can watch the diagnosis
// recognise them. Each fault is a (re)start of one node with a changed
// configuration or store; ClearFault starts it as configured again.

// NodeFault says how a node is started wrong. Zero fields change nothing.
type NodeFault struct {
	// Routes replaces the node's configured routes: each "host:port" is
	// dialed as nats-route://host:port. Host names that do not resolve
	// make a DNS fault, addresses that lead elsewhere wrong routes.
	Routes []string
	// Unreachable makes the address the peers route to refuse them, as
	// when a node listens for routes elsewhere than where its peers look
	// (a changed cluster port). Without it the peers, whose routes are
	// right, would dial the node and heal any route fault at once.
	Unreachable bool
	// MaxMemoryStore replaces the JetStream memory limit (bytes).
	MaxMemoryStore int64
	// MaxPending sets how many bytes may wait for one connection before
	// the server drops it as a slow consumer (NATS's default is 64 MB);
	// below 1 MB it lowers max_payload to match, as NATS demands.
	MaxPending int64
}

// defaultMaxPayload is NATS's default max_payload.
const defaultMaxPayload = 1 << 20

var (
	routesLine    = regexp.MustCompile(`(?m)^(\s*routes: )\[[^\]]*\]`)
	maxMemoryLine = regexp.MustCompile(`(?m)^(\s*max_memory_store: ).*$`)
)

// edit returns the configuration rewrite of the fault.
func (f NodeFault) edit() func(string) string {
	return func(conf string) string {
		if f.Routes != nil {
			urls := make([]string, len(f.Routes))
			for i, r := range f.Routes {
				urls[i] = fmt.Sprintf("%q", "nats-route://"+r)
			}
			conf = routesLine.ReplaceAllLiteralString(conf, "  routes: ["+strings.Join(urls, ", ")+"]")
		}
		if f.MaxMemoryStore > 0 {
			conf = maxMemoryLine.ReplaceAllString(conf, fmt.Sprintf("${1}%d", f.MaxMemoryStore))
		}
		if f.MaxPending > 0 {
			conf = fmt.Sprintf("max_pending: %d\n", f.MaxPending) + conf
			if f.MaxPending < defaultMaxPayload {
				// NATS refuses a max_payload above max_pending.
				conf = fmt.Sprintf("max_payload: %d\n", f.MaxPending) + conf
			}
		}
		return conf
	}
}

// StartFaulty stops the node if it runs and starts it again with the fault
// in its configuration; it returns once the node accepts connections.
func (e *Embedded) StartFaulty(ctx context.Context, name string, f NodeFault) error {
	n := e.Node(name)
	if n == nil {
		return fmt.Errorf("start %q with a fault: unknown node", name)
	}
	n.stop()
	n.mu.Lock()
	n.confEdit = f.edit()
	n.mu.Unlock()
	if f.Unreachable {
		e.fab.fence(name)
	}
	if err := e.RestartNode(ctx, name); err != nil {
		return fmt.Errorf("start %s with a fault: %w", name, err)
	}
	e.log.Info().Str("pod", name).Strs("routes", f.Routes).Bool("unreachable", f.Unreachable).
		Int64("maxMemoryStore", f.MaxMemoryStore).Int64("maxPending", f.MaxPending).Msg("node started with a fault")
	return nil
}

// ClearFault stops the node, drops its fault and starts it as configured,
// reachable again; it returns once its routes are back.
func (e *Embedded) ClearFault(ctx context.Context, name string) error {
	n := e.Node(name)
	if n == nil {
		return fmt.Errorf("clear fault of %q: unknown node", name)
	}
	n.stop()
	n.mu.Lock()
	n.confEdit = nil
	n.mu.Unlock()
	if err := e.RestartNode(ctx, name); err != nil {
		return fmt.Errorf("clear fault of %s: %w", name, err)
	}
	if err := n.Unfence(ctx); err != nil {
		return fmt.Errorf("clear fault of %s: %w", name, err)
	}
	return nil
}

// StoreDir returns the directory of the node's JetStream store.
func (n *EmbeddedNode) StoreDir() string { return n.storeDir }

// CopyStore copies the stopped node's JetStream store into dst, which must
// not exist yet: a backup to restore later with ReplaceStore.
func (e *Embedded) CopyStore(name, dst string) error {
	n, err := e.stoppedNode(name)
	if err != nil {
		return fmt.Errorf("copy store: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("copy store of %s: %s exists", name, dst)
	}
	if err := copyTree(n.storeDir, dst); err != nil {
		return fmt.Errorf("copy store of %s: %w", name, err)
	}
	return nil
}

// ReplaceStore replaces the stopped node's JetStream store with a copy of
// src, as when a node is restored from an old backup or volume snapshot.
func (e *Embedded) ReplaceStore(name, src string) error {
	n, err := e.stoppedNode(name)
	if err != nil {
		return fmt.Errorf("replace store: %w", err)
	}
	if err := os.RemoveAll(n.storeDir); err != nil {
		return fmt.Errorf("replace store of %s: %w", name, err)
	}
	if err := copyTree(src, n.storeDir); err != nil {
		return fmt.Errorf("replace store of %s: %w", name, err)
	}
	e.log.Info().Str("pod", name).Str("from", src).Msg("store replaced")
	return nil
}

func (e *Embedded) stoppedNode(name string) (*EmbeddedNode, error) {
	n := e.Node(name)
	if n == nil {
		return nil, fmt.Errorf("unknown node %q", name)
	}
	if n.Running() {
		return nil, fmt.Errorf("%s is running; stop it first", name)
	}
	return n, nil
}

// copyTree copies the directory tree src to dst (regular files and
// directories; the store has nothing else).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case info.Mode().IsRegular():
			return copyFile(path, target, info.Mode().Perm())
		default:
			return fmt.Errorf("copy %s: not a regular file", path)
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}
