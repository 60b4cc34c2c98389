package kubenode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prober-dev/prober/tools/images"
)

// The install that `make node` and the tests put on the node: deploy/
// through an overlay that only swaps its image names for the locally built
// ones (WriteOverlay).
const (
	// DeployBase is the kustomize base, relative to the repository root.
	DeployBase = "deploy"
	// DeployNamespace is the namespace deploy/ installs into.
	DeployNamespace = "nats"
	// DeploySelector selects its NATS pods.
	DeploySelector = "app.kubernetes.io/name=nats"
	// DeployReplicas is the number of NATS pods.
	DeployReplicas = 3
)

// EnvBin names the folder of the Kubernetes binaries (make test sets it);
// scripts/kubeenv-bin.sh prints it, building it first if needed.
const EnvBin = "PROBER_KUBEENV_BIN"

// BinDir returns $PROBER_KUBEENV_BIN, or what scripts/kubeenv-bin.sh
// prints (it builds the binaries once per machine: tens of minutes cold).
func BinDir(repoRoot string) (string, error) {
	if d := os.Getenv(EnvBin); d != "" {
		return d, nil
	}
	cmd := exec.Command("bash", filepath.Join(repoRoot, "scripts", "kubeenv-bin.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("scripts/kubeenv-bin.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// RepoRoot returns the folder of the main module's go.mod at or above the
// working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/prober-dev/prober\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("the prober's go.mod is not at or above the working directory")
		}
		dir = parent
	}
}

// WithDeploy is a node with deploy/ installed.
type WithDeploy struct {
	*Node
	Images *images.Set
	// InstallReady is the time from `kubectl apply -k` to every NATS pod
	// Ready.
	InstallReady time.Duration
}

// ImageSwap is one entry of a kustomization's images: the name the base
// uses, and the name and tag to use instead.
type ImageSwap struct{ Name, NewName, NewTag string }

// ImageSwaps are the swaps that make deploy/ run the images of set: the
// prober (deploy/ names it ghcr.io/prober-dev/prober) and the NATS server
// (the official "nats" image in deploy/).
func ImageSwaps(set *images.Set) []ImageSwap {
	var out []ImageSwap
	for base, short := range map[string]string{"ghcr.io/prober-dev/prober": "prober", "nats": "nats-server"} {
		repo, tag, _ := strings.Cut(set.Refs[short], ":")
		// kubenode.local/x:tag: the registry part has no port, so the
		// first colon separates the tag.
		out = append(out, ImageSwap{Name: base, NewName: repo, NewTag: tag})
	}
	slices.SortFunc(out, func(a, b ImageSwap) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// WriteOverlay writes into dir a kustomization whose only change to base
// is swapping image names. kustomize refuses an overlay inside its base's
// folder, so it is written outside, referring to base by a relative path.
func WriteOverlay(dir, base string, swaps []ImageSwap) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# deploy/ with its images swapped for those built locally (tools/images).\n")
	fmt.Fprintf(&b, "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- %s\nimages:\n", rel)
	for _, s := range swaps {
		fmt.Fprintf(&b, "- name: %s\n  newName: %s\n  newTag: %s\n", s.Name, s.NewName, s.NewTag)
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644)
}

// StartWithDeploy builds the images into imageDir, starts a node that has
// them and installs deploy/ through DeployOverlay.
func StartWithDeploy(ctx context.Context, repoRoot, imageDir string, o Options) (*WithDeploy, error) {
	logf := o.Logf
	set, err := images.Build(ctx, images.Options{RepoRoot: repoRoot, Dir: imageDir, Logf: logf})
	if err != nil {
		return nil, err
	}
	o.Images = append(o.Images, set.Archive)
	o.SandboxImage = set.Refs["pause"]
	n, err := Start(ctx, o)
	if err != nil {
		return nil, err
	}
	overlay := filepath.Join(n.Dir, "overlay")
	err = WriteOverlay(overlay, filepath.Join(repoRoot, DeployBase), ImageSwaps(set))
	var took time.Duration
	if err == nil {
		icx, cancel := context.WithTimeout(ctx, 4*time.Minute)
		defer cancel()
		took, err = n.Install(icx, overlay, DeployNamespace, DeploySelector, DeployReplicas)
	}
	if err != nil {
		if serr := n.Stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, fmt.Errorf("install %s: %w", DeployBase, err)
	}
	n.phase(fmt.Sprintf("deploy/ installed (%.1fs)", took.Seconds()))
	return &WithDeploy{Node: n, Images: set, InstallReady: took}, nil
}
