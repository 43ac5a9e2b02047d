package server

import (
	"crypto/sha256"
	"slices"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/meshlite/meshlite/istiod-lite/xds"
)

// A proxy's cache snapshot holds, per type, only the resources it has asked
// for. What it is sent does not change (the cache filters every response by
// the request's names anyway), but go-control-plane sizes the bookkeeping it
// keeps per stream and type (the map of returned resources) by the number of
// resources in the snapshot, not by the number returned. A proxyless client
// asks for one listener, one route and three clusters out of a mesh's
// hundreds, so with whole snapshots that bookkeeping was the largest live
// allocation with a thousand clients connected (docs/performance.md).

// subscription is every name a proxy has asked for of one type while
// connected, or all of them. It only grows: a name a proxy stops asking for
// stays, which costs a little memory and never hides a resource.
type subscription struct {
	all   bool
	names []string // sorted
}

// add records a request's names and reports whether the set grew. all is a
// wildcard request (state of the world with no names, or "*", or any delta
// stream). known, sorted by name, are the proxy's resources of the type: a
// name found there is kept as their string, which every proxy shares,
// rather than the request's.
func (s *subscription) add(names []string, all bool, known []xds.Resource) bool {
	if s.all {
		return false
	}
	if all || slices.Contains(names, "*") {
		s.all = true
		s.names = nil
		return true
	}
	fresh := 0
	for _, n := range names {
		if !s.has(n) {
			fresh++
		}
	}
	if fresh == 0 {
		return false
	}
	// Sort once rather than insert one by one: a request may name thousands.
	merged := make([]string, len(s.names), len(s.names)+fresh)
	copy(merged, s.names)
	for _, n := range names {
		if s.has(n) {
			continue
		}
		if j, ok := slices.BinarySearchFunc(known, n, func(r xds.Resource, n string) int { return strings.Compare(r.Name, n) }); ok {
			n = known[j].Name
		}
		merged = append(merged, n)
	}
	slices.Sort(merged)
	s.names = slices.Compact(merged)
	return true
}

func (s *subscription) has(name string) bool {
	if s.all {
		return true
	}
	_, found := slices.BinarySearch(s.names, name)
	return found
}

// subKey identifies a proxy's subscriptions, so that proxies of one shape
// that asked for the same names share one cache snapshot. It is a digest
// rather than the names themselves because every proxy keeps its own.
type subKey [16]byte

func subscriptionKey(subs *[numTypes]typeState) subKey {
	h := sha256.New()
	for i := range subs {
		h.Write([]byte{1})
		if subs[i].sub.all {
			h.Write([]byte{'*'})
			continue
		}
		for _, n := range subs[i].sub.names {
			h.Write([]byte(n))
			h.Write([]byte{0})
		}
	}
	var k subKey
	copy(k[:], h.Sum(nil))
	return k
}

// snapKey is a cache snapshot's content: one generation's resources cut to
// one set of subscriptions.
type snapKey struct {
	res  *xds.Resources
	subs subKey
}

// maxShared bounds how many cache snapshots one generation remembers for
// sharing. Names come from clients, so the distinct subscription sets are
// theirs to multiply; past the bound the memo starts again (snapshots in use
// stay with their proxies, new ones are just not shared with them).
const maxShared = 4096

// snapshots shares cache snapshots and wrapped resources among proxies within
// one generation. Guarded by Server.mu; replaced by each push.
type snapshots struct {
	bySubs  map[snapKey]*cachev3.Snapshot
	wrapped map[*xds.Resources]*[numTypes][]types.ResourceWithTTL
}

func newSnapshots() *snapshots {
	return &snapshots{bySubs: map[snapKey]*cachev3.Snapshot{}, wrapped: map[*xds.Resources]*[numTypes][]types.ResourceWithTTL{}}
}

// forProxy returns p's cache snapshot: p.res cut to p's subscriptions. The
// caller holds Server.mu.
func (ss *snapshots) forProxy(p *proxy) *cachev3.Snapshot {
	if !p.subKeySet {
		p.subKey, p.subKeySet = subscriptionKey(&p.byType), true
	}
	key := snapKey{p.res, p.subKey}
	if snap := ss.bySubs[key]; snap != nil {
		return snap
	}
	snap := cacheSnapshot(p.res, ss.wrap(p.res), &p.byType)
	if len(ss.bySubs) >= maxShared {
		clear(ss.bySubs)
	}
	ss.bySubs[key] = snap
	return snap
}

// wrap makes res's resources into what the cache holds, once per generation.
func (ss *snapshots) wrap(res *xds.Resources) *[numTypes][]types.ResourceWithTTL {
	if w := ss.wrapped[res]; w != nil {
		return w
	}
	w := new([numTypes][]types.ResourceWithTTL)
	for i, t := range xds.TypeURLs {
		list := res.ByType[t]
		w[i] = make([]types.ResourceWithTTL, len(list))
		for j, r := range list {
			w[i][j] = types.ResourceWithTTL{Resource: premarshaled(r)}
		}
	}
	ss.wrapped[res] = w
	return w
}

// cacheSnapshot converts generated resources, reusing their content hashes as
// delta versions and their wire bytes as payloads, so the cache neither hashes
// nor marshals them again. Each type keeps the version of all its resources,
// subscribed or not, so that subscribing to more names never changes a
// version. The snapshot is read-only once built (VersionMap is filled), so
// proxies share it.
func cacheSnapshot(res *xds.Resources, wrapped *[numTypes][]types.ResourceWithTTL, subs *[numTypes]typeState) *cachev3.Snapshot {
	snap := &cachev3.Snapshot{VersionMap: map[string]map[string]string{}}
	for i, t := range xds.TypeURLs {
		list := res.ByType[t]
		sub := &subs[i].sub
		n := len(list)
		if !sub.all {
			n = min(n, len(sub.names))
		}
		items := make(map[string]types.ResourceWithTTL, n)
		vm := make(map[string]string, n)
		for j, r := range list {
			if sub.has(r.Name) {
				items[r.Name] = wrapped[i][j]
				vm[r.Name] = r.Hash
			}
		}
		snap.Resources[cachev3.GetResponseType(t)] = cachev3.Resources{Version: res.Version(t), Items: items}
		snap.VersionMap[t] = vm
	}
	return snap
}
