package agent

import (
	"testing"
	"time"

	"github.com/meshlite/meshlite/sds/secret"
)

// A new trust bundle must close the channel the xDS proxy waits on, so that it
// re-dials istiod with the new roots.
func TestCertSourceSignalsNewRoots(t *testing.T) {
	hub := &secret.Hub{}
	cs := newCertSource(hub)
	stop := make(chan struct{})
	defer close(stop)
	go cs.watch(stop)

	_, changed := cs.TrustBundle()
	// The watcher subscribes asynchronously; publish until the signal arrives.
	deadline := time.After(5 * time.Second)
	for i := 0; ; i++ {
		hub.SetBundle(&secret.Bundle{PEM: []byte{byte(i)}})
		select {
		case <-changed:
			return
		case <-deadline:
			t.Fatal("a new ROOTCA never closed the trust-bundle channel")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestCertSourceWithoutCertificate(t *testing.T) {
	cs := newCertSource(&secret.Hub{})
	if _, err := cs.GetClientCertificate(nil); err == nil {
		t.Fatal("GetClientCertificate before any certificate: want an error saying none was obtained yet")
	}
}
