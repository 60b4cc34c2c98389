package prober

import (
	"context"
	"net"
	"net/http"
	"net/netip"
)

// User is the caller of a request as the authentication middleware saw it.
type User struct {
	// Name is what a maintenance entry records as requestedBy.
	Name string
	// Loopback is true for a request from the pod itself (port-forward),
	// which is trusted.
	Loopback bool
}

// LoopbackUser is the name given to callers on the loopback interface.
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

// authenticate puts the caller in the request context. For now it trusts
// every caller and names it by its address: "loopback" for 127.0.0.0/8 and
// ::1, else the remote IP. Token checks (TokenReview, static tokens) slot
// in here, and authorization as a middleware after it.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u := remoteUser(r.RemoteAddr)
		if info := infoFrom(r.Context()); info != nil {
			info.user = u.Name
		}
		next.ServeHTTP(w, r.WithContext(ContextWithUser(r.Context(), u)))
	})
}

// remoteUser names the caller at addr ("host:port" as in
// http.Request.RemoteAddr).
func remoteUser(addr string) User {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return User{Name: host}
	}
	ip = ip.Unmap()
	if ip.IsLoopback() {
		return User{Name: LoopbackUser, Loopback: true}
	}
	return User{Name: ip.String()}
}

// requestedBy is the name a change made by r records.
func requestedBy(r *http.Request) string {
	if u, ok := UserFromContext(r.Context()); ok {
		return u.Name
	}
	return remoteUser(r.RemoteAddr).Name
}
