package ingress

import (
	"net"
	"net/http"
	"sync"
)

// unusedConns tracks the connections on which no request has been read yet (http.StateNew), so
// that a stop can close them at once. HTTP clients dial spare connections and park them in their
// idle pool; such a connection carries no webhook, yet net/http's Shutdown waits up to 5 s for it
// before counting it as idle, which made a stop with nothing in flight overrun an
// ingress.shutdown_timeout below that and report unanswered webhooks.
type unusedConns struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool
}

// track is the server's ConnState hook. Once the stop has begun, a connection that is accepted
// (still in the listener's backlog when the stop began) is closed at once.
func (u *unusedConns) track(c net.Conn, state http.ConnState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if state != http.StateNew {
		delete(u.conns, c)
		return
	}
	if u.closing {
		_ = c.Close()
		return
	}
	if u.conns == nil {
		u.conns = map[net.Conn]struct{}{}
	}
	u.conns[c] = struct{}{}
}

// closeAll closes every connection that has not delivered a request and every one accepted from
// now on. A client whose request bytes were in flight on such a connection sees it closed with
// no answer, as it would have received a 503 during the stop: IDnow retries either way.
func (u *unusedConns) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.closing = true
	for c := range u.conns {
		_ = c.Close()
	}
	clear(u.conns)
}
