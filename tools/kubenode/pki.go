package kubenode

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// identity is one user of the API server with a static bearer token.
type identity struct {
	user, uid string
	groups    []string
	token     string
}

// credentials are the node's certificate authority, the API server's
// serving certificate, the ServiceAccount signing key and a static token
// per component: the simplest authentication that the Node and RBAC
// authorizers accept, for a node that lives for one run.
type credentials struct {
	caFile, certFile, keyFile string
	saKey, saPub              string
	tokensFile                string
	ids                       map[string]identity // by component: admin, kubelet, kcm, scheduler, proxy
}

// writeCredentials generates everything into dir.
func writeCredentials(dir, nodeName string) (*credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c := &credentials{
		caFile:     filepath.Join(dir, "ca.crt"),
		certFile:   filepath.Join(dir, "apiserver.crt"),
		keyFile:    filepath.Join(dir, "apiserver.key"),
		saKey:      filepath.Join(dir, "sa.key"),
		saPub:      filepath.Join(dir, "sa.pub"),
		tokensFile: filepath.Join(dir, "tokens.csv"),
		ids: map[string]identity{
			"admin":     {user: "admin", uid: "admin", groups: []string{"system:masters"}},
			"kubelet":   {user: "system:node:" + nodeName, uid: "kubelet", groups: []string{"system:nodes"}},
			"kcm":       {user: "system:kube-controller-manager", uid: "kcm"},
			"scheduler": {user: "system:kube-scheduler", uid: "scheduler"},
			"proxy":     {user: "system:kube-proxy", uid: "kube-proxy"},
		},
	}
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubenode-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	srvKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// The node address (components, pods through the kubernetes
		// Service), loopback (the host's published port) and the
		// Service's cluster IP and names.
		IPAddresses: []net.IP{net.ParseIP(NodeIP), net.ParseIP("127.0.0.1"), net.ParseIP(apiServiceIP)},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + ClusterDomain},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		c.caFile:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		c.certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		c.keyFile:  pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(srvKey)}),
		c.saKey:    pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		c.saPub:    pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	}
	var tokens strings.Builder
	for name, id := range c.ids {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		id.token = hex.EncodeToString(b)
		c.ids[name] = id
		// token,user,uid,"group1,group2"
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", id.token, id.user, id.uid, strings.Join(id.groups, ","))
	}
	files[c.tokensFile] = []byte(tokens.String())
	for p, b := range files {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return nil, err
		}
	}
	// The CA is public: kubectl users other than root may read it.
	if err := os.Chmod(c.caFile, 0o644); err != nil {
		return nil, err
	}
	return c, nil
}

// kubeconfig renders a kubeconfig for the component's identity against
// server, with namespace as the context's default ("" for none).
func (c *credentials) kubeconfig(component, server, namespace string) []byte {
	id := c.ids[component]
	ns := ""
	if namespace != "" {
		ns = "\n    namespace: " + namespace
	}
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: kubenode
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: kubenode
  context:
    cluster: kubenode
    user: %s%s
current-context: kubenode
`, server, c.caFile, id.user, id.token, id.user, ns)
}
