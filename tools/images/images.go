// Package images builds the container images that the real-node tests run,
// without a container engine, a daemon or a registry: a static Go binary
// (and the folders it needs) in one layer, an image configuration, both
// assembled by go-containerregistry used as a library and written as a
// docker-archive tarball, which `ctr images import` reads.
//
// Builds are reproducible: every file of a layer is owned by root with a
// zero modification time, entries are sorted, the layer is compressed
// deterministically and the configuration's creation time is the epoch, so
// the same binaries give the same digests.
package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// File is one regular file of an image.
type File struct {
	// Path is the absolute path in the image, for example "/prober".
	Path string
	// Mode holds the permission bits; 0o644 when 0.
	Mode int64
	// Source is a file on disk whose content is copied; Content is used
	// when Source is empty.
	Source  string
	Content []byte
}

// Dir is a folder of an image that no file implies, or that needs other
// permissions than 0o755 (for example /tmp, 0o1777).
type Dir struct {
	Path string
	Mode int64
}

// Spec describes a single-layer image.
type Spec struct {
	// Ref is the image's name and tag, for example
	// "kubenode.local/prober:dev".
	Ref   string
	Files []File
	Dirs  []Dir
	// The configuration, as a Dockerfile would set it.
	Entrypoint []string
	Cmd        []string
	User       string
	// ExposedPorts are "<port>/<protocol>", for example "8889/tcp".
	ExposedPorts []string
	Env          []string
	WorkingDir   string
	Labels       map[string]string
}

// epoch is the time of every file and of the configuration.
var epoch = time.Unix(0, 0).UTC()

// Validate reports what is wrong with s.
func (s Spec) Validate() error {
	var errs []error
	if _, err := name.NewTag(s.Ref, name.StrictValidation); err != nil {
		errs = append(errs, fmt.Errorf("image reference %q: %w", s.Ref, err))
	}
	if len(s.Entrypoint) == 0 && len(s.Cmd) == 0 {
		errs = append(errs, fmt.Errorf("image %s: neither an entrypoint nor a command", s.Ref))
	}
	seen := map[string]bool{}
	for _, f := range s.Files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			errs = append(errs, fmt.Errorf("image %s: file path %q is not a clean absolute path", s.Ref, f.Path))
		}
		if seen[f.Path] {
			errs = append(errs, fmt.Errorf("image %s: file %s given twice", s.Ref, f.Path))
		}
		seen[f.Path] = true
	}
	for _, d := range s.Dirs {
		if !path.IsAbs(d.Path) || path.Clean(d.Path) != d.Path || d.Path == "/" {
			errs = append(errs, fmt.Errorf("image %s: folder path %q is not a clean absolute path", s.Ref, d.Path))
		}
	}
	for _, p := range s.ExposedPorts {
		port, proto, ok := strings.Cut(p, "/")
		if !ok || port == "" || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			errs = append(errs, fmt.Errorf("image %s: exposed port %q is not <port>/<tcp|udp|sctp>", s.Ref, p))
		}
	}
	return errors.Join(errs...)
}

// Image assembles the image s describes.
func (s Spec) Image() (v1.Image, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	layerTar, err := s.layer()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", s.Ref, err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "prober tools/images", Comment: s.Ref},
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint,
		Cmd:        s.Cmd,
		User:       s.User,
		Env:        s.Env,
		WorkingDir: s.WorkingDir,
		Labels:     s.Labels,
	}
	if len(s.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", s.Ref, err)
	}
	return img, nil
}

// layer returns the uncompressed tar of the image's one layer: the
// folders (given ones and those the files imply), then the files, in path
// order, owned by root, with zero times.
func (s Spec) layer() ([]byte, error) {
	dirs := map[string]int64{}
	var addParents func(p string)
	addParents = func(p string) {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	for _, d := range s.Dirs {
		addParents(d.Path)
		mode := d.Mode
		if mode == 0 {
			mode = 0o755
		}
		dirs[d.Path] = mode
	}
	files := slices.Clone(s.Files)
	for _, f := range files {
		addParents(f.Path)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range slices.Sorted(maps.Keys(dirs)) {
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: dirs[d],
			ModTime: epoch, Format: tar.FormatPAX,
		}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		content := f.Content
		if f.Source != "" {
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, fmt.Errorf("file %s: %w", f.Path, err)
			}
			content = b
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.Path, "/"), Mode: mode,
			Size: int64(len(content)), ModTime: epoch, Format: tar.FormatPAX,
		}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes the images, by reference, into one docker-archive
// tarball at path (the format of `docker save`, which `ctr images import`
// and `docker load` read).
func WriteArchive(path string, imgs map[string]v1.Image) error {
	refs := make(map[name.Reference]v1.Image, len(imgs))
	for ref, img := range imgs {
		tag, err := name.NewTag(ref, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("image archive: reference %q: %w", ref, err)
		}
		refs[tag] = img
	}
	if err := tarball.MultiRefWriteToFile(path, refs); err != nil {
		return fmt.Errorf("image archive %s: %w", path, err)
	}
	return nil
}
