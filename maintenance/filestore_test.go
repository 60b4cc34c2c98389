package maintenance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fsOpen opens a FileStore for a test and closes it at the end.
func fsOpen(tb testing.TB, path string, poll time.Duration) *FileStore {
	tb.Helper()
	s, err := OpenFileStore(path, FileStoreOptions{PollInterval: poll, Logger: zerolog.Nop()})
	require.NoError(tb, err)
	tb.Cleanup(func() { assert.NoError(tb, s.Close()) })
	return s
}

// fsIncrement adds one to the counter kept as the Reason of entry name.
func fsIncrement(m map[string]Entry, name string) error {
	e := m[name]
	n := 0
	if e.Reason != "" {
		var err error
		if n, err = strconv.Atoi(e.Reason); err != nil {
			return err
		}
	}
	e.Reason = strconv.Itoa(n + 1)
	m[name] = e
	return nil
}

// fsReceive reports whether ch delivers a value (or is closed: ok false)
// before the deadline.
func fsReceive(ch <-chan struct{}, within time.Duration) (got, ok bool) {
	t := time.NewTimer(within)
	defer t.Stop()
	select {
	case _, ok := <-ch:
		return true, ok
	case <-t.C:
		return false, false
	}
}

func TestFileStoreCreateAndRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nested", "dir", "maintenance.json")
	s := fsOpen(t, path, 0)

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.JSONEq(t, `{"resourceVersion":"1","data":{}}`, string(b))
	d, err := s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, "1", d.ResourceVersion)
	assert.Empty(t, d.Pods)

	want := docSample()
	got, err := s.Update(ctx, func(d *Document) error {
		*d = *docSample()
		return nil
	})
	require.NoError(t, err)
	want.ResourceVersion = "2"
	assert.Equal(t, want, got)

	got, err = s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// The file holds the same key/value form as the ConfigMap.
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	wantData, err := want.Data()
	require.NoError(t, err)
	var onDisk struct {
		ResourceVersion string            `json:"resourceVersion"`
		Data            map[string]string `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &onDisk))
	assert.Equal(t, "2", onDisk.ResourceVersion)
	assert.Equal(t, wantData, onDisk.Data)

	// No temporary file is left behind.
	names, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var files []string
	for _, n := range names {
		files = append(files, n.Name())
	}
	assert.ElementsMatch(t, []string{"maintenance.json", "maintenance.json.lock"}, files)

	// Another store on the same file, as after a restart, reads the same.
	other := fsOpen(t, path, 0)
	got, err = other.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

func TestFileStoreUpdateWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, 0)
	_, err := s.Update(ctx, func(d *Document) error {
		d.Pods["nats-0"] = Entry{Reason: "r", Since: docT0}
		return nil
	})
	require.NoError(t, err)
	before, err := os.Stat(path)
	require.NoError(t, err)
	beforeBytes, err := os.ReadFile(path)
	require.NoError(t, err)

	errBoom := errors.New("boom")
	tests := []struct {
		name    string
		fn      func(*Document) error
		wantErr error
	}{
		{"no change", func(*Document) error { return nil }, nil},
		{"same value written again", func(d *Document) error {
			d.Pods["nats-0"] = Entry{Reason: "r", Since: docT0}
			return nil
		}, nil},
		{"fn error after a change", func(d *Document) error {
			d.Pods["nats-1"] = Entry{}
			return errBoom
		}, errBoom},
		{"resourceVersion is not fn's to change", func(d *Document) error {
			d.ResourceVersion = "100"
			return nil
		}, nil},
		{"invalid name", func(d *Document) error {
			d.Pods["a/b"] = Entry{}
			return nil
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.Update(ctx, tt.fn)
			switch {
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
				assert.Same(t, tt.wantErr, err, "returned as is")
				assert.Nil(t, d)
			case tt.name == "invalid name":
				require.Error(t, err)
				assert.Equal(t, EInvalid, ErrorCode(err))
			default:
				require.NoError(t, err)
				assert.Equal(t, "2", d.ResourceVersion)
				assert.Contains(t, d.Pods, "nats-0")
			}
			after, err := os.Stat(path)
			require.NoError(t, err)
			assert.True(t, os.SameFile(before, after), "file not replaced")
			afterBytes, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, string(beforeBytes), string(afterBytes))
		})
	}
}

func TestFileStoreConcurrentUpdates(t *testing.T) {
	const goroutines, increments = 50, 20
	ctx := context.Background()
	s := fsOpen(t, filepath.Join(t.TempDir(), "m.json"), 0)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			own := fmt.Sprintf("pod-%d", g)
			for range increments {
				_, err := s.Update(ctx, func(d *Document) error {
					if err := fsIncrement(d.Pods, own); err != nil {
						return err
					}
					return fsIncrement(d.DCs, "shared")
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	t.Logf("%d updates in %s (%s each)", goroutines*increments, time.Since(start),
		time.Since(start)/(goroutines*increments))

	d, err := s.Get(ctx)
	require.NoError(t, err)
	require.Len(t, d.Pods, goroutines)
	for name, e := range d.Pods {
		assert.Equal(t, strconv.Itoa(increments), e.Reason, name)
	}
	assert.Equal(t, strconv.Itoa(goroutines*increments), d.DCs["shared"].Reason, "shared counter")
	assert.Equal(t, strconv.Itoa(1+goroutines*increments), d.ResourceVersion, "one write per update")
}

// TestFileStoreTwoStoresOnePath runs two stores on one file, as two
// processes would, each with concurrent writers of its own.
func TestFileStoreTwoStoresOnePath(t *testing.T) {
	const perStore, increments = 8, 25
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	stores := []*FileStore{fsOpen(t, path, 10*time.Millisecond), fsOpen(t, path, 10*time.Millisecond)}

	var wg sync.WaitGroup
	errs := make(chan error, 2*perStore)
	for i, s := range stores {
		for g := range perStore {
			wg.Go(func() {
				own := fmt.Sprintf("s%d-g%d", i, g)
				for range increments {
					if _, err := s.Update(ctx, func(d *Document) error {
						if err := fsIncrement(d.Pods, own); err != nil {
							return err
						}
						return fsIncrement(d.DCs, "shared")
					}); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for i, s := range stores {
		d, err := s.Get(ctx)
		require.NoError(t, err)
		assert.Len(t, d.Pods, 2*perStore, "store %d", i)
		for name, e := range d.Pods {
			assert.Equal(t, strconv.Itoa(increments), e.Reason, name)
		}
		assert.Equal(t, strconv.Itoa(2*perStore*increments), d.DCs["shared"].Reason)
		assert.Equal(t, strconv.Itoa(1+2*perStore*increments), d.ResourceVersion)
	}
}

// fsChildEnv makes the test binary act as a second process that increments
// the shared counter of the file named in the variable.
const fsChildEnv = "PROBER_FILESTORE_CHILD"

func TestFileStoreChildProcess(t *testing.T) {
	path := os.Getenv(fsChildEnv)
	if path == "" {
		t.Skip("helper process for TestFileStoreTwoProcesses")
	}
	n, err := strconv.Atoi(os.Getenv(fsChildEnv + "_N"))
	require.NoError(t, err)
	s := fsOpen(t, path, 0)
	for range n {
		_, err := s.Update(context.Background(), func(d *Document) error { return fsIncrement(d.DCs, "shared") })
		require.NoError(t, err)
	}
}

// TestFileStoreTwoProcesses checks that the flock really serialises
// separate processes: two children and this process increment one counter.
func TestFileStoreTwoProcesses(t *testing.T) {
	const children, increments = 2, 100
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, 0)

	cmds := make([]*exec.Cmd, children)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestFileStoreChildProcess$", "-test.count=1")
		cmds[i].Env = append(os.Environ(), fsChildEnv+"="+path, fsChildEnv+"_N="+strconv.Itoa(increments))
		require.NoError(t, cmds[i].Start())
	}
	for range increments {
		_, err := s.Update(ctx, func(d *Document) error { return fsIncrement(d.DCs, "shared") })
		require.NoError(t, err)
	}
	for _, c := range cmds {
		require.NoError(t, c.Wait())
	}
	d, err := s.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa((children+1)*increments), d.DCs["shared"].Reason)
	assert.Equal(t, strconv.Itoa(1+(children+1)*increments), d.ResourceVersion)
}

func TestFileStoreLockHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.json")
	s := fsOpen(t, path, 0)

	// Hold the lock as another process would.
	lock, err := os.OpenFile(path+".lock", os.O_RDWR, 0)
	require.NoError(t, err)
	defer lock.Close()
	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = s.Update(ctx, func(d *Document) error { return fsIncrement(d.DCs, "x") })
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.NoError(t, unix.Flock(int(lock.Fd()), unix.LOCK_UN))
	d, err := s.Update(context.Background(), func(d *Document) error { return fsIncrement(d.DCs, "x") })
	require.NoError(t, err)
	assert.Equal(t, "1", d.DCs["x"].Reason)
	assert.Equal(t, "2", d.ResourceVersion)
}

func TestFileStoreWatch(t *testing.T) {
	const wait = 5 * time.Second
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.json")
	// A poll interval far above the deadline of the own-write check shows
	// that own writes do not wait for the poller.
	a := fsOpen(t, path, time.Hour)
	b := fsOpen(t, path, 20*time.Millisecond)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chA, err := a.Watch(wctx)
	require.NoError(t, err)
	chB, err := b.Watch(wctx)
	require.NoError(t, err)

	t.Run("nothing before a write", func(t *testing.T) {
		got, _ := fsReceive(chB, 100*time.Millisecond)
		assert.False(t, got)
	})
	t.Run("own write at once", func(t *testing.T) {
		_, err := a.Update(ctx, func(d *Document) error { return fsIncrement(d.Pods, "nats-0") })
		require.NoError(t, err)
		got, open := fsReceive(chA, time.Second)
		assert.True(t, got && open)
	})
	t.Run("other process's write within the poll interval", func(t *testing.T) {
		got, open := fsReceive(chB, wait)
		assert.True(t, got && open)
	})
	t.Run("coalesced", func(t *testing.T) {
		for range 5 {
			_, err := b.Update(ctx, func(d *Document) error { return fsIncrement(d.Pods, "nats-0") })
			require.NoError(t, err)
		}
		got, open := fsReceive(chB, time.Second)
		require.True(t, got && open)
		got, _ = fsReceive(chB, 100*time.Millisecond)
		assert.False(t, got, "five writes, one pending value")
	})
	t.Run("no write, no notification", func(t *testing.T) {
		_, err := b.Update(ctx, func(*Document) error { return nil })
		require.NoError(t, err)
		got, _ := fsReceive(chB, 100*time.Millisecond)
		assert.False(t, got)
	})
	t.Run("closed when the context ends", func(t *testing.T) {
		cctx, ccancel := context.WithCancel(ctx)
		ch, err := b.Watch(cctx)
		require.NoError(t, err)
		ccancel()
		got, open := fsReceive(ch, wait)
		assert.True(t, got)
		assert.False(t, open)
	})
	t.Run("closed when the store closes", func(t *testing.T) {
		c, err := OpenFileStore(path, FileStoreOptions{Logger: zerolog.Nop()})
		require.NoError(t, err)
		ch, err := c.Watch(ctx)
		require.NoError(t, err)
		require.NoError(t, c.Close())
		got, open := fsReceive(ch, wait)
		assert.True(t, got)
		assert.False(t, open)
		_, err = c.Watch(ctx)
		assert.Error(t, err)
		_, err = c.Update(ctx, func(d *Document) error { return fsIncrement(d.Pods, "x") })
		assert.Error(t, err)
		assert.NoError(t, c.Close(), "second close")
	})
}

func TestFileStoreCorruptFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string
	}{
		{"garbage", "not json at all", "corrupt file"},
		{"empty", "", "the file is empty"},
		{"truncated", `{"resourceVersion":"3","data":{"pod.nats-0":"{}"`, "corrupt file"},
		{"unknown field", `{"resourceVersion":"3","data":{},"extra":1}`, "corrupt file"},
		{"resourceVersion not a counter", `{"resourceVersion":"abc","data":{}}`, "not a counter"},
		{"missing resourceVersion", `{"data":{}}`, "not a counter"},
		{"bad key", `{"resourceVersion":"3","data":{"node.x":"{}"}}`, "unknown key"},
		{"bad entry", `{"resourceVersion":"3","data":{"pod.x":"[]"}}`, `"pod.x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "m.json")

			// A store opened on a good file sees the corruption on use.
			s := fsOpen(t, path, 0)
			require.NoError(t, os.WriteFile(path, []byte(tt.content), 0o644))
			_, err := s.Get(ctx)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Contains(t, err.Error(), path)
			_, err = s.Update(ctx, func(d *Document) error { return fsIncrement(d.Pods, "x") })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)

			// Opening a corrupt file fails too.
			_, err = OpenFileStore(path, FileStoreOptions{Logger: zerolog.Nop()})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)

			b, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, tt.content, string(b), "never overwritten")
		})
	}
}

func TestOpenFileStoreRejects(t *testing.T) {
	dir := t.TempDir()
	_, err := OpenFileStore("", FileStoreOptions{})
	assert.Error(t, err)
	_, err = OpenFileStore(filepath.Join(dir, "m.json"), FileStoreOptions{PollInterval: -time.Second})
	assert.Error(t, err)
	// The parent is a file, so the directory cannot be made.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "file"), nil, 0o644))
	_, err = OpenFileStore(filepath.Join(dir, "file", "m.json"), FileStoreOptions{})
	assert.Error(t, err)
}

func BenchmarkFileStoreUpdate(b *testing.B) {
	ctx := context.Background()
	s := fsOpen(b, filepath.Join(b.TempDir(), "m.json"), 0)
	for b.Loop() {
		if _, err := s.Update(ctx, func(d *Document) error { return fsIncrement(d.DCs, "n") }); err != nil {
			b.Fatal(err)
		}
	}
}
