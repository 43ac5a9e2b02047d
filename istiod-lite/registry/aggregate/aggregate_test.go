package aggregate

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

type static struct {
	snap    atomic.Pointer[model.Snapshot]
	ready   atomic.Bool
	changes chan struct{}
}

func newStatic(s *model.Snapshot) *static {
	r := &static{changes: make(chan struct{}, 1)}
	r.snap.Store(s)
	r.ready.Store(true)
	return r
}
func (s *static) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (s *static) Current() *model.Snapshot      { return s.snap.Load() }
func (s *static) Changes() <-chan struct{}      { return s.changes }
func (s *static) Ready() bool                   { return s.ready.Load() }
func (s *static) set(n *model.Snapshot) {
	s.snap.Store(n)
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

func svc(host, ns string) *model.Service { return &model.Service{Hostname: host, Namespace: ns} }

func TestMergeFirstRegistryWinsHost(t *testing.T) {
	kube := newStatic(&model.Snapshot{Version: "k1", Services: []*model.Service{svc("b.x", "kube"), svc("d.x", "kube")}})
	file := newStatic(&model.Snapshot{Version: "f1", Services: []*model.Service{svc("a.x", "file"), svc("b.x", "file")}})
	agg, err := New(kube, file)
	if err != nil {
		t.Fatal(err)
	}
	got := agg.Current()
	var hosts []string
	for _, s := range got.Services {
		hosts = append(hosts, s.Hostname+"@"+s.Namespace)
	}
	want := []string{"a.x@file", "b.x@kube", "d.x@kube"}
	if len(hosts) != 3 || hosts[0] != want[0] || hosts[1] != want[1] || hosts[2] != want[2] {
		t.Fatalf("merged services = %v, want %v", hosts, want)
	}
	if agg.Current() != got {
		t.Error("Current rebuilt an unchanged merge")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- agg.Run(ctx) }()
	file.set(&model.Snapshot{Version: "f2"})
	select {
	case <-agg.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("member change not signalled")
	}
	if v := agg.Current().Version; v == got.Version {
		t.Errorf("version unchanged (%s) after a member changed", v)
	}
	kube.ready.Store(false)
	if agg.Ready() {
		t.Error("Ready with a member not ready")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCurrentNilUntilEveryMemberHasOne(t *testing.T) {
	a := newStatic(&model.Snapshot{Version: "1"})
	b := newStatic(nil)
	agg, _ := New(a, b)
	if agg.Current() != nil {
		t.Fatal("merged snapshot published without every registry")
	}
	if _, err := New(); err == nil {
		t.Fatal("New accepted no members")
	}
}
