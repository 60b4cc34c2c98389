package natsraft

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// credWriteFiles creates each file of files (path relative to dir → content).
func credWriteFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		require.NoError(tb, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(tb, os.WriteFile(p, []byte(content), 0o600))
	}
}

// credWhoAmI asks the server which account the connection is in.
func credWhoAmI(tb testing.TB, nc *nats.Conn) string {
	tb.Helper()
	msg, err := nc.Request("$SYS.REQ.USER.INFO", nil, 2*time.Second)
	require.NoError(tb, err)
	var resp struct {
		Data  *server.UserInfo `json:"data"`
		Error *server.ApiError `json:"error"`
	}
	require.NoError(tb, json.Unmarshal(msg.Data, &resp), "%s", msg.Data)
	require.Nil(tb, resp.Error)
	require.NotNil(tb, resp.Data, "%s", msg.Data)
	return resp.Data.Account
}

func TestDialURLs(t *testing.T) {
	servers := map[string]string{
		"nats-2": "nats://10.0.0.3:4222",
		"nats-0": "nats://10.0.0.1:4222",
		"nats-1": "nats://10.0.0.2:4222",
		"nats-3": "",
	}
	tests := []struct {
		name  string
		avoid []string
		want  []string
	}{
		{"all, by name, no empty URL", nil, []string{"nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"}},
		{"avoid one", []string{"nats-1"}, []string{"nats://10.0.0.1:4222", "nats://10.0.0.3:4222"}},
		{"avoid unknown", []string{"nats-9"}, []string{"nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"}},
		{"avoid all", []string{"nats-0", "nats-1", "nats-2"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, dialURLs(servers, tt.avoid))
		})
	}
}

func TestCredentialsLookup(t *testing.T) {
	dir := t.TempDir()
	credWriteFiles(t, dir, map[string]string{
		"APP/user":         "app\n",
		"APP/password":     "s3cret\r\n",
		"$SYS/user":        "sys",
		"$SYS/password":    "sys-pass",
		"JWT.creds":        "not parsed until connect",
		"JWT/user":         "ignored: the .creds file wins",
		"JWT/password":     "ignored",
		"NOPASS/user":      "u",
		"EMPTY/user":       "\n",
		"EMPTY/password":   "p",
		"..data/user":      "volume internals",
		"..data/password":  "volume internals",
		"DIRCREDS.creds/x": "a folder named like a creds file is not one",
	})
	d := &CredentialsDialer{Dir: dir}
	tests := []struct {
		account        string
		user, password string
		jwt            bool
		wantErr        string
	}{
		{account: "APP", user: "app", password: "s3cret"},
		{account: SystemAccount, user: "sys", password: "sys-pass"},
		{account: "$SYS", user: "sys", password: "sys-pass"},
		{account: "JWT", jwt: true},
		{account: "NOPASS", wantErr: "has a user but no password"},
		{account: "EMPTY", wantErr: "is empty"},
		{account: "OTHER", wantErr: `no credentials for account "OTHER"`},
		{account: "DIRCREDS", wantErr: `no credentials for account "DIRCREDS"`},
		{account: "..data", wantErr: "cannot name a credentials file"},
		{account: "../APP", wantErr: "cannot name a credentials file"},
		{account: "", wantErr: "cannot name a credentials file"},
	}
	for _, tt := range tests {
		t.Run(tt.account, func(t *testing.T) {
			opt, err := d.credentials(tt.account)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			var o nats.Options
			require.NoError(t, opt(&o))
			assert.Equal(t, tt.jwt, o.UserJWT != nil, "JWT callback set")
			if tt.jwt {
				assert.Nil(t, o.UserInfo)
				return
			}
			require.NotNil(t, o.UserInfo)
			user, password := o.UserInfo()
			assert.Equal(t, tt.user, user)
			assert.Equal(t, tt.password, password)
		})
	}

	t.Run("a rotated password is read at the next connect", func(t *testing.T) {
		rot := t.TempDir()
		credWriteFiles(t, rot, map[string]string{"APP/user": "app", "APP/password": "one"})
		opt, err := (&CredentialsDialer{Dir: rot}).credentials("APP")
		require.NoError(t, err)
		var o nats.Options
		require.NoError(t, opt(&o))
		_, password := o.UserInfo()
		assert.Equal(t, "one", password)
		credWriteFiles(t, rot, map[string]string{"APP/password": "two\n"})
		_, password = o.UserInfo()
		assert.Equal(t, "two", password)
		require.NoError(t, os.Remove(filepath.Join(rot, "APP", "password")))
		user, password := o.UserInfo()
		assert.Equal(t, []string{"app", "two"}, []string{user, password}, "the last pair read while the files are gone")
	})

	t.Run("no folder", func(t *testing.T) {
		_, err := (&CredentialsDialer{}).credentials("APP")
		require.Error(t, err)
	})
}

// TestCredentialsDialerEmbedded dials the embedded cluster's accounts with
// user/password files, as a mounted Secret provides them.
func TestCredentialsDialerEmbedded(t *testing.T) {
	e := embeddedForTest(t, EmbeddedOptions{})
	dir := t.TempDir()
	credWriteFiles(t, dir, map[string]string{
		"APP/user": "app\n", "APP/password": "app\n",
		"$SYS/user": "sys", "$SYS/password": "sys",
		"WRONG/user": "app", "WRONG/password": "not-the-password",
	})
	servers := map[string]string{}
	for _, n := range e.Nodes() {
		servers[n.Name()] = n.ClientURL()
	}
	d := &CredentialsDialer{Dir: dir, Servers: func() map[string]string { return servers }, Name: "test"}

	tests := []struct {
		account string
		avoid   []string
		wantAcc string
		wantErr bool
	}{
		{account: AppAccount, wantAcc: AppAccount},
		{account: SystemAccount, wantAcc: SystemAccount},
		{account: AppAccount, avoid: []string{"nats-0", "nats-1"}, wantAcc: AppAccount},
		{account: SystemAccount, avoid: []string{"nats-2"}, wantAcc: SystemAccount},
		{account: "WRONG", wantErr: true},
		{account: "MISSING", wantErr: true},
		{account: AppAccount, avoid: []string{"nats-0", "nats-1", "nats-2"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s avoid %v", tt.account, tt.avoid), func(t *testing.T) {
			nc, err := d.Dial(tt.account, tt.avoid...)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			defer nc.Close()
			assert.NotContains(t, tt.avoid, nc.ConnectedServerName())
			assert.Equal(t, tt.wantAcc, credWhoAmI(t, nc))
		})
	}

	t.Run("a lame-duck notice moves the connection, never to an avoided node", func(t *testing.T) {
		nc, err := d.Dial(AppAccount, "nats-0")
		require.NoError(t, err)
		defer nc.Close()
		first := nc.ConnectedServerName()
		require.NotEqual(t, "nats-0", first)
		cid, err := nc.GetClientID()
		require.NoError(t, err)
		require.NoError(t, e.Node(first).Server().LDMClientByID(cid))
		require.Eventually(t, func() bool {
			name := nc.ConnectedServerName()
			return nc.IsConnected() && name != first && name != ""
		}, 10*time.Second, 10*time.Millisecond)
		assert.NotEqual(t, "nats-0", nc.ConnectedServerName())
		assert.Equal(t, AppAccount, credWhoAmI(t, nc))
	})
}

// TestCredentialsDialServer connects to one server that is not up yet and
// stays with it once it is.
func TestCredentialsDialServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	dir := t.TempDir()
	credWriteFiles(t, dir, map[string]string{"SYS/user": "sys", "SYS/password": "sys"})
	d := &CredentialsDialer{Dir: dir, Name: "fence"}
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)

	nc, err := d.DialServer(SystemAccount, url)
	require.NoError(t, err, "no server yet: the connection keeps trying")
	defer nc.Close()
	assert.False(t, nc.IsConnected())

	conf := filepath.Join(t.TempDir(), "one.conf")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil,
		"server_name: solo\nhost: 127.0.0.1\nport: %d\nsystem_account: SYS\naccounts {\n  SYS { users: [{user: sys, password: sys}] }\n}\n",
		port), 0o600))
	opts, err := server.ProcessConfigFile(conf)
	require.NoError(t, err)
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second))

	require.Eventually(t, nc.IsConnected, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "solo", nc.ConnectedServerName())
	assert.Equal(t, SystemAccount, credWhoAmI(t, nc))
	assert.Equal(t, []string{url}, nc.Servers(), "no server learnt from the cluster")

	_, err = d.DialServer("APP", url)
	require.Error(t, err, "no credentials for APP")
}

// credOperatorServer starts a single NATS server in operator mode (accounts as
// JWTs, preloaded in a memory resolver) and returns its client URL and an
// account with a user's credentials file.
func credOperatorServer(t *testing.T) (url, account string, creds []byte) {
	t.Helper()
	op, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opPub, err := op.PublicKey()
	require.NoError(t, err)
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(op)
	require.NoError(t, err)

	newAccount := func(name string) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		enc, err := ac.Encode(op)
		require.NoError(t, err)
		return kp, pub, enc
	}
	_, sysPub, sysJWT := newAccount("SYS")
	accKP, accPub, accJWT := newAccount("TEAM")

	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	userPub, err := user.PublicKey()
	require.NoError(t, err)
	seed, err := user.Seed()
	require.NoError(t, err)
	uc := jwt.NewUserClaims(userPub)
	uc.Name = "prober"
	userJWT, err := uc.Encode(accKP)
	require.NoError(t, err)
	creds, err = jwt.FormatUserConfig(userJWT, seed)
	require.NoError(t, err)

	conf := filepath.Join(t.TempDir(), "op.conf")
	require.NoError(t, os.WriteFile(conf, fmt.Appendf(nil,
		"host: 127.0.0.1\nport: -1\noperator: %q\nsystem_account: %q\nresolver: MEMORY\nresolver_preload: {\n  %s: %q\n  %s: %q\n}\n",
		opJWT, sysPub, sysPub, sysJWT, accPub, accJWT), 0o600))
	opts, err := server.ProcessConfigFile(conf)
	require.NoError(t, err)
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	require.NoError(t, err)
	go s.Start()
	t.Cleanup(s.Shutdown)
	require.True(t, s.ReadyForConnections(10*time.Second), "operator-mode server ready")
	return s.ClientURL(), accPub, creds
}

// TestCredentialsDialerCredsFile dials an account of an operator-mode server
// with a credentials file named after the account's public key.
func TestCredentialsDialerCredsFile(t *testing.T) {
	url, account, creds := credOperatorServer(t)
	dir := t.TempDir()
	credWriteFiles(t, dir, map[string]string{account + ".creds": string(creds)})
	d := &CredentialsDialer{Dir: dir, Servers: func() map[string]string { return map[string]string{"op-0": url} }}

	nc, err := d.Dial(account)
	require.NoError(t, err)
	defer nc.Close()
	assert.Equal(t, account, credWhoAmI(t, nc))

	// A credentials file of another account's name fails to authenticate.
	other := t.TempDir()
	credWriteFiles(t, other, map[string]string{"TEAM.creds": "-----BEGIN NATS USER JWT-----\nbogus\n------END NATS USER JWT------\n"})
	_, err = (&CredentialsDialer{Dir: other, Servers: d.Servers}).Dial("TEAM")
	require.Error(t, err)
}
