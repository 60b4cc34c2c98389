package natsraft

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Dialer connects to the cluster as a user of the given account, on any
// node but those named in avoid. Embedded.Dial satisfies it.
type Dialer func(account string, avoid ...string) (*nats.Conn, error)

// Defaults of CredentialsDialer.
const (
	DefaultDialTimeout = 2 * time.Second
	// credsSuffix names an account's credentials file: a user JWT and its
	// nkey seed, as `nsc generate creds` writes them.
	credsSuffix = ".creds"
	// userFile and passwordFile hold an account's user and password in the
	// account's folder.
	userFile     = "user"
	passwordFile = "password"
)

// CredentialsDialer is the Dialer of a real deployment: it reaches each
// account with credentials from a folder, normally a Kubernetes Secret
// mounted into the prober's container, and the servers by their client URLs.
//
// For an account A (its name as the monitoring endpoints report it: the
// account name, or the account's public key in operator mode) the folder
// holds either
//
//	<Dir>/A.creds              a credentials file (user JWT + nkey seed)
//	<Dir>/A/user, <Dir>/A/password   a user and its password
//
// checked in that order. A trailing newline of user and password is
// ignored. The system account is asked for as "SYS" (SystemAccount) and
// also found under "$SYS", and the other way round. The files are read on
// every Dial, so a rotated Secret takes effect without a restart.
//
// A Secret's keys cannot hold a "/": mount user/password pairs with items,
// for example {key: sys-password, path: SYS/password}; keys like
// "APP.creds" mount as they are.
type CredentialsDialer struct {
	// Dir is the credentials folder.
	Dir string
	// Servers returns the client URL of every server by its name; it is
	// asked on every Dial.
	Servers func() map[string]string
	// Name is the connection name servers show in /connz.
	Name string
	// Timeout bounds connecting to one server; DefaultDialTimeout when 0.
	Timeout time.Duration
	// Options are added to every connection, for example nats.Secure for
	// TLS or nats.RootCAs.
	Options []nats.Option
}

// Dial connects as a user of account to one of the servers not named in
// avoid. The connection reconnects forever and follows a lame-duck notice
// to another server; when avoid is given it ignores the servers it learns
// of from the cluster, so that it never lands on an avoided one.
func (d *CredentialsDialer) Dial(account string, avoid ...string) (*nats.Conn, error) {
	auth, err := d.credentials(account)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", account, err)
	}
	var servers map[string]string
	if d.Servers != nil {
		servers = d.Servers()
	}
	return dialAvoiding(account, servers, avoid, append([]nats.Option{auth}, d.options()...)...)
}

// dialAvoiding connects to the servers (by name) other than avoid. A
// connection that avoids some servers ignores those it learns of from the
// cluster, so it never lands on an avoided one, and a lame-duck notice
// moves it to another server at once.
func dialAvoiding(account string, servers map[string]string, avoid []string, opts ...nats.Option) (*nats.Conn, error) {
	urls := dialURLs(servers, avoid)
	if len(urls) == 0 {
		return nil, fmt.Errorf("dial %s: no server to dial (%d known, avoiding %s)", account, len(servers), strings.Join(avoid, ", "))
	}
	opts = append(opts, nats.LameDuckModeHandler(func(nc *nats.Conn) { _ = nc.ForceReconnect() }))
	if len(avoid) > 0 {
		opts = append(opts, nats.IgnoreDiscoveredServers())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", account, err)
	}
	return nc, nil
}

// DialServer connects as a user of account to the one server at url and
// stays with it: it ignores the servers it learns of from the cluster, and
// when the server is not up yet (a sidecar starts before its NATS server)
// it returns a connection that keeps trying in the background. It is how
// the kernel fence talks to the local server over the system account.
func (d *CredentialsDialer) DialServer(account, url string) (*nats.Conn, error) {
	auth, err := d.credentials(account)
	if err != nil {
		return nil, fmt.Errorf("dial %s at %s: %w", account, url, err)
	}
	opts := append([]nats.Option{auth, nats.IgnoreDiscoveredServers(), nats.RetryOnFailedConnect(true)}, d.options()...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s at %s: %w", account, url, err)
	}
	return nc, nil
}

// options are the connect options common to Dial and DialServer.
func (d *CredentialsDialer) options() []nats.Option {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	name := d.Name
	if name == "" {
		name = "prober"
	}
	return append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond),
		nats.Timeout(timeout),
	}, d.Options...)
}

// dialURLs returns the client URLs of the servers not in avoid, sorted by
// server name; servers without a URL are left out.
func dialURLs(servers map[string]string, avoid []string) []string {
	var urls []string
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		if u := servers[name]; u != "" && !slices.Contains(avoid, name) {
			urls = append(urls, u)
		}
	}
	return urls
}

// credentials returns the connect option carrying account's credentials.
func (d *CredentialsDialer) credentials(account string) (nats.Option, error) {
	if err := validAccountFileName(account); err != nil {
		return nil, err
	}
	if d.Dir == "" {
		return nil, errors.New("no credentials folder configured")
	}
	names := []string{account}
	switch account {
	case SystemAccount:
		names = append(names, "$SYS")
	case "$SYS":
		names = append(names, SystemAccount)
	}
	for _, name := range names {
		creds := filepath.Join(d.Dir, name+credsSuffix)
		if fi, err := os.Stat(creds); err == nil && !fi.IsDir() {
			return nats.UserCredentials(creds), nil
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		user, err := readSecretFile(filepath.Join(d.Dir, name, userFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		password, err := readSecretFile(filepath.Join(d.Dir, name, passwordFile))
		if err != nil {
			return nil, fmt.Errorf("credentials: %s/%s has a user but no password: %w", d.Dir, name, err)
		}
		return nats.UserInfoHandler(userInfoFiles(filepath.Join(d.Dir, name), user, password)), nil
	}
	return nil, fmt.Errorf("no credentials for account %q in %s: want %s%s or %s/%s and %s/%s",
		account, d.Dir, account, credsSuffix, account, userFile, account, passwordFile)
}

// userInfoFiles returns a callback that reads the user and password files
// of folder on every (re)connect, so that a long-lived connection picks up a
// rotated password; while they cannot be read it keeps the last pair read.
func userInfoFiles(folder, user, password string) nats.UserInfoCB {
	var mu sync.Mutex
	return func() (string, string) {
		mu.Lock()
		defer mu.Unlock()
		u, uerr := readSecretFile(filepath.Join(folder, userFile))
		p, perr := readSecretFile(filepath.Join(folder, passwordFile))
		if uerr == nil && perr == nil {
			user, password = u, p
		}
		return user, password
	}
}

// readSecretFile returns a file's content without its trailing newline; an
// empty file is an error.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// validAccountFileName refuses account names that would reach outside the
// credentials folder or into the Secret volume's own "..data" entries.
func validAccountFileName(account string) error {
	if account == "" || strings.HasPrefix(account, ".") || strings.ContainsAny(account, `/\`+"\x00") {
		return fmt.Errorf("account %q cannot name a credentials file", account)
	}
	return nil
}
