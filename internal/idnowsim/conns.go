package idnowsim

import (
	"net"
	"net/http"
	"sync"
)

// newConns tracks the server's connections on which no request has arrived yet. Go's HTTP
// client dials a spare connection when all are busy and parks it unused if another frees up
// first; http.Server.Shutdown treats such a connection as active for 5 seconds, so several API
// clients (enricher and reconciler in one process) made Close wait out its timeout. Close
// closes them first: nothing was sent on them, and a client retries such a request elsewhere.
type newConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (n *newConns) track(c net.Conn, st http.ConnState) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if st == http.StateNew {
		if n.m == nil {
			n.m = map[net.Conn]struct{}{}
		}
		n.m[c] = struct{}{}
		return
	}
	delete(n.m, c)
}

func (n *newConns) closeAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.m {
		_ = c.Close()
	}
	clear(n.m)
}
