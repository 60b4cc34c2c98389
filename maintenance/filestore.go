package maintenance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// DefaultFilePollInterval is how often a FileStore looks for changes written
// by other processes when FileStoreOptions.PollInterval is zero.
const DefaultFilePollInterval = time.Second

// FileStoreOptions configures a FileStore.
type FileStoreOptions struct {
	// PollInterval is how often Watch looks at the file for writes by other
	// processes; zero means DefaultFilePollInterval. Own writes are
	// announced at once.
	PollInterval time.Duration
	// Logger receives the store's diagnostics.
	Logger zerolog.Logger
}

// FileStore is the Store of the embedded default and of non-Kubernetes
// installs: one JSON file, {"resourceVersion":"<n>","data":{…}}, whose data
// is the same key/value form as the ConfigMap (see Document.Data).
//
// Every write replaces the file atomically (temporary file in the same
// directory, fsync, rename, fsync of the directory), so a reader never sees
// half a document and a crash leaves either the old or the new one. Writers
// are serialised by a mutex between goroutines and by flock(2) on a sibling
// "<file>.lock" between processes; the resourceVersion counts writes and
// Update compare-and-swaps on it, so no update is lost even between two
// processes sharing the file. A file that does not decode is reported, never
// overwritten.
type FileStore struct {
	path string
	log  zerolog.Logger
	poll time.Duration

	// sem serialises this store's writers; a channel so that waiting for it
	// honours the context.
	sem  chan struct{}
	lock *os.File // the open "<file>.lock", flock'ed while writing

	mu       sync.Mutex
	watchers map[chan struct{}]struct{}
	seenRV   string      // last resourceVersion announced to watchers
	seenStat fsFileStamp // stat of the file when seenRV was read
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// fsFileStamp is what the poller compares to skip reading an unchanged file.
type fsFileStamp struct {
	ino   uint64
	size  int64
	mtime int64 // nanoseconds
}

// fsFile is the on-disk shape.
type fsFile struct {
	ResourceVersion string            `json:"resourceVersion"`
	Data            map[string]string `json:"data"`
}

// Compile-time check that FileStore is a Store.
var _ Store = (*FileStore)(nil)

// OpenFileStore opens the store kept in the file at path, creating the file
// (with an empty document at resourceVersion "1") and its directory if they
// are missing. An existing file that does not decode is an error. Close
// releases it.
func OpenFileStore(path string, o FileStoreOptions) (*FileStore, error) {
	if path == "" {
		return nil, fmt.Errorf("open file store: empty path")
	}
	if o.PollInterval < 0 {
		return nil, fmt.Errorf("open file store %s: negative poll interval %s", path, o.PollInterval)
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultFilePollInterval
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open file store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("open file store %s: %w", abs, err)
	}
	lock, err := os.OpenFile(abs+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open file store %s: lock file: %w", abs, err)
	}
	s := &FileStore{
		path:     abs,
		log:      o.Logger.With().Str("store", abs).Logger(),
		poll:     o.PollInterval,
		sem:      make(chan struct{}, 1),
		lock:     lock,
		watchers: map[chan struct{}]struct{}{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if err := s.init(); err != nil {
		_ = lock.Close()
		return nil, err
	}
	go s.pollLoop()
	return s, nil
}

// init creates the file if it is missing (under the lock, so that two
// processes opening at once agree) and checks that it decodes.
func (s *FileStore) init() error {
	ctx := context.Background()
	if err := s.acquire(ctx); err != nil {
		return err
	}
	defer s.release()
	f, st, err := s.readFile()
	if errors.Is(err, os.ErrNotExist) {
		if err := s.writeFile(&fsFile{ResourceVersion: "1", Data: map[string]string{}}); err != nil {
			return err
		}
		f, st, err = s.readFile()
	}
	if err != nil {
		return err
	}
	if _, err := DecodeData(f.Data, f.ResourceVersion); err != nil {
		return fmt.Errorf("file store %s: corrupt document: %w", s.path, err)
	}
	s.seenRV, s.seenStat = f.ResourceVersion, st
	return nil
}

// Get returns the document as currently stored. Reads take no lock: the
// file is only ever replaced whole.
func (s *FileStore) Get(ctx context.Context) (*Document, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file store %s: get: %w", s.path, err)
	}
	d, _, err := s.read()
	return d, err
}

// Update reads the document, applies fn to a private copy and, if fn
// changed it, writes it back on condition that the stored resourceVersion
// is still the one read. On a conflict (another goroutine or process wrote
// in between) it re-reads under the lock and applies fn once more to the
// fresh document, then writes while still holding the lock, so it never
// loops and never loses an update. fn may therefore run twice, the second
// time with the lock held: it must be quick and must not call Update. An
// error from fn aborts without writing and is returned as is. An unchanged
// document is not written. Update returns the document as stored afterwards.
func (s *FileStore) Update(ctx context.Context, fn func(*Document) error) (*Document, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file store %s: update: %w", s.path, err)
	}
	base, baseData, err := s.read()
	if err != nil {
		return nil, err
	}
	next, nextData, err := s.apply(base, fn)
	if err != nil {
		return nil, err
	}
	if maps.Equal(baseData, nextData) {
		return base, nil
	}

	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	defer s.release()
	cur, curData, err := s.read()
	if err != nil {
		return nil, err
	}
	if cur.ResourceVersion != base.ResourceVersion {
		s.log.Debug().Str("read", base.ResourceVersion).Str("stored", cur.ResourceVersion).
			Msg("update conflict, applying again")
		if next, nextData, err = s.apply(cur, fn); err != nil {
			return nil, err
		}
		if maps.Equal(curData, nextData) {
			return cur, nil
		}
	}
	rv, err := strconv.ParseUint(cur.ResourceVersion, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("file store %s: resourceVersion %q: %w", s.path, cur.ResourceVersion, err)
	}
	next.ResourceVersion = strconv.FormatUint(rv+1, 10)
	if err := s.writeFile(&fsFile{ResourceVersion: next.ResourceVersion, Data: nextData}); err != nil {
		return nil, err
	}
	s.announce(next.ResourceVersion)
	return next, nil
}

// apply runs fn on a copy of d and encodes the result.
func (s *FileStore) apply(d *Document, fn func(*Document) error) (*Document, map[string]string, error) {
	next := d.Clone()
	if err := fn(next); err != nil {
		return nil, nil, err
	}
	next.ResourceVersion = d.ResourceVersion
	data, err := next.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("file store %s: encode: %w", s.path, err)
	}
	return next, data, nil
}

// Watch returns a channel that receives a value after every change of the
// stored document: at once after this store's own writes, and within the
// poll interval after writes by other processes. Values are coalesced (the
// channel holds at most one), so a receiver should re-read the document. The
// channel is closed when ctx ends or the store is closed.
func (s *FileStore) Watch(ctx context.Context) (<-chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("file store %s: watch: store is closed", s.path)
	}
	ch := make(chan struct{}, 1)
	s.watchers[ch] = struct{}{}
	go func() {
		select {
		case <-ctx.Done():
		case <-s.stop:
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watchers[ch]; ok {
			delete(s.watchers, ch)
			close(ch)
		}
	}()
	return ch, nil
}

// Close stops the poller, closes every Watch channel and releases the lock
// file. It is safe to call more than once.
func (s *FileStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	for ch := range s.watchers {
		delete(s.watchers, ch)
		close(ch)
	}
	s.mu.Unlock()
	<-s.done
	// Wait for a writer still holding the lock file before closing it.
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("file store %s: close: %w", s.path, err)
	}
	return nil
}

// announce records rv as seen and wakes every watcher if it is new.
func (s *FileStore) announce(rv string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.announceLocked(rv)
}

func (s *FileStore) announceLocked(rv string) {
	if rv == s.seenRV {
		return
	}
	s.seenRV = rv
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// pollLoop notices writes by other processes.
func (s *FileStore) pollLoop() {
	defer close(s.done)
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.pollOnce()
		}
	}
}

func (s *FileStore) pollOnce() {
	st, err := s.stat()
	if err != nil {
		s.log.Warn().Err(err).Msg("poll")
		return
	}
	// Reading under mu orders this read with the announcement of an own
	// write, so an older revision read here is never announced after it.
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == s.seenStat {
		return
	}
	f, st, err := s.readFile()
	if err != nil {
		s.log.Warn().Err(err).Msg("poll")
		return
	}
	s.seenStat = st
	s.announceLocked(f.ResourceVersion)
}

// read returns the stored document and its data.
func (s *FileStore) read() (*Document, map[string]string, error) {
	f, _, err := s.readFile()
	if err != nil {
		return nil, nil, err
	}
	d, err := DecodeData(f.Data, f.ResourceVersion)
	if err != nil {
		return nil, nil, fmt.Errorf("file store %s: corrupt document: %w", s.path, err)
	}
	return d, f.Data, nil
}

// readFile reads and decodes the file strictly, returning the stat of the
// very file read. A missing file is an error wrapping os.ErrNotExist.
func (s *FileStore) readFile() (*fsFile, fsFileStamp, error) {
	fh, err := os.Open(s.path)
	if err != nil {
		return nil, fsFileStamp{}, fmt.Errorf("file store %s: %w", s.path, err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, fsFileStamp{}, fmt.Errorf("file store %s: %w", s.path, err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(fh); err != nil {
		return nil, fsFileStamp{}, fmt.Errorf("file store %s: read: %w", s.path, err)
	}
	if len(bytes.TrimSpace(b.Bytes())) == 0 {
		return nil, fsFileStamp{}, fmt.Errorf("file store %s: corrupt file (fix or remove it): the file is empty", s.path)
	}
	f := &fsFile{}
	if err := DecodeStrict(b.Bytes(), f); err != nil {
		return nil, fsFileStamp{}, fmt.Errorf("file store %s: corrupt file (fix or remove it): %w", s.path, err)
	}
	if _, err := strconv.ParseUint(f.ResourceVersion, 10, 64); err != nil {
		return nil, fsFileStamp{}, fmt.Errorf("file store %s: corrupt file (fix or remove it): resourceVersion %q is not a counter",
			s.path, f.ResourceVersion)
	}
	if f.Data == nil {
		f.Data = map[string]string{}
	}
	return f, fsStamp(fi), nil
}

func (s *FileStore) stat() (fsFileStamp, error) {
	fi, err := os.Stat(s.path)
	if err != nil {
		return fsFileStamp{}, fmt.Errorf("file store %s: %w", s.path, err)
	}
	return fsStamp(fi), nil
}

func fsStamp(fi os.FileInfo) fsFileStamp {
	st := fsFileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if sys, ok := fi.Sys().(*unix.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st
}

// writeFile replaces the file atomically. The caller holds the lock.
func (s *FileStore) writeFile(f *fsFile) (err error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("file store %s: encode: %w", s.path, err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(s.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(b); err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	if err = tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("file store %s: fsync: %w", s.path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("file store %s: write: %w", s.path, err)
	}
	if err = os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("file store %s: rename: %w", s.path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("file store %s: fsync dir: %w", s.path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("file store %s: fsync dir: %w", s.path, err)
	}
	return nil
}

// acquire takes the in-process semaphore, then the flock on the lock file,
// both honouring ctx. flock has no timeout, so a held lock is polled with a
// short, growing back-off.
func (s *FileStore) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("file store %s: lock: %w", s.path, ctx.Err())
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		<-s.sem
		return fmt.Errorf("file store %s: store is closed", s.path)
	}
	backoff := 100 * time.Microsecond
	for {
		err := unix.Flock(int(s.lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			<-s.sem
			return fmt.Errorf("file store %s: lock: %w", s.path, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			<-s.sem
			return fmt.Errorf("file store %s: lock: %w", s.path, ctx.Err())
		}
		backoff = min(2*backoff, 10*time.Millisecond)
	}
}

// release drops the flock and the semaphore.
func (s *FileStore) release() {
	if err := unix.Flock(int(s.lock.Fd()), unix.LOCK_UN); err != nil {
		s.log.Error().Err(err).Msg("unlock")
	}
	<-s.sem
}
