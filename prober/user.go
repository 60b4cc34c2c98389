package prober

import (
	"context"
	"net"
	"net/http"
	"net/netip"
)

// User is the caller of a request as the authentication middleware saw it.
type User struct {
	// Name is what a maintenance entry records as requestedBy, e.g.
	// "system:serviceaccount:nats:operator" for a ServiceAccount token.
	Name string
	// UID, Groups and Extra are what the token review reported; the
	// SubjectAccessReview passes them on, so that RBAC bindings to groups
	// work.
	UID    string
	Groups []string
	Extra  map[string][]string
	// Loopback is true for a request from the pod itself (port-forward),
	// which is trusted: it is not authorized, and it needs no token.
	Loopback bool
}

// LoopbackUser is the name given to callers on the loopback interface that
// send no token.
const LoopbackUser = "loopback"

type userKey struct{}

// ContextWithUser returns ctx carrying u.
func ContextWithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, userKey{}, u)
}

// UserFromContext returns the user that the authentication middleware put
// in ctx.
func UserFromContext(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(userKey{}).(User)
	return u, ok
}

// authenticate is the middleware of the protected routes (/pods, /dcs,
// /config, /raft): WithAuthentication, then WithAuthorization.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return s.WithAuthentication(s.WithAuthorization(next))
}

// isLoopback reports whether addr ("host:port" as in
// http.Request.RemoteAddr) is on the loopback interface: 127.0.0.0/8, ::1
// and their IPv4-mapped forms. An address that does not parse is not.
func isLoopback(addr string) bool {
	ip, ok := remoteIP(addr)
	return ok && ip.IsLoopback()
}

// remoteIP parses the IP out of addr, unmapping IPv4-mapped IPv6.
func remoteIP(addr string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// requestedBy is the name a change made by r records: the authenticated
// user, else (a route without the auth middleware) the remote address.
func requestedBy(r *http.Request) string {
	if u, ok := UserFromContext(r.Context()); ok {
		return u.Name
	}
	if isLoopback(r.RemoteAddr) {
		return LoopbackUser
	}
	if ip, ok := remoteIP(r.RemoteAddr); ok {
		return ip.String()
	}
	return r.RemoteAddr
}
