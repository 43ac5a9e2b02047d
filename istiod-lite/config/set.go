package config

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/meshlite/meshlite/istiod-lite/model"
)

// Set is a complete, validated configuration: every object passed its own
// rules and the cross-object ones. Build a model.Snapshot from it with Build.
type Set struct {
	// Objects sorted by kind, namespace and name.
	Objects []*Object
	Options Options
}

// Mesh returns the MeshConfig document, or nil when the set has none.
func (s *Set) Mesh() *meshv1alpha1.MeshConfig {
	for _, o := range s.Objects {
		if m, ok := o.Value.(*meshv1alpha1.MeshConfig); ok {
			return m
		}
	}
	return nil
}

// IsConfigFile reports whether name is read as configuration: *.yaml, *.yml or *.json.
func IsConfigFile(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// hidden names are skipped: editors' swap and backup files (.foo.yaml.swp) and
// the timestamped directories and ..data link of a Kubernetes ConfigMap volume,
// whose files are also visible through the top-level symlinks. Reading both
// would duplicate every object.
func hidden(name string) bool { return strings.HasPrefix(name, ".") }

// Files lists the config files under dir, recursively and sorted. Symlinks to
// files are followed (ConfigMap volumes are made of them); hidden files and
// directories are skipped.
func Files(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && hidden(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !IsConfigFile(d.Name()) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				return nil // dangling or not a file: a ConfigMap swap in progress
			}
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing config directory %s: %w", dir, err)
	}
	slices.Sort(files)
	return files, nil
}

// Load reads, parses and validates every config file in paths (files or
// directories, recursively). On any problem it returns all of them as Errors
// and no Set.
func Load(paths []string, opts Options) (*Set, error) {
	return NewLoader(opts).Load(paths)
}

// LoadFiles reads and validates exactly the given files.
func LoadFiles(files []string, opts Options) (*Set, error) {
	return NewLoader(opts).LoadFiles(files)
}

// Loader loads the same paths repeatedly and re-parses only the files whose
// content changed since the previous load; the cross-object rules always run
// over the whole set. A reload after editing one file of a large directory
// costs one file's parse. A Loader is not safe for concurrent use.
type Loader struct {
	opts  Options
	cache map[string]parsedFile
}

type parsedFile struct {
	sum  [sha256.Size]byte
	objs []*Object
	errs Errors
}

// NewLoader returns a Loader with an empty cache.
func NewLoader(opts Options) *Loader {
	return &Loader{opts: opts.withDefaults(), cache: map[string]parsedFile{}}
}

// Load is the package-level Load, with caching.
func (l *Loader) Load(paths []string) (*Set, error) {
	files, errs := ExpandPaths(paths)
	set, err := l.LoadFiles(files)
	if err != nil {
		errs = append(errs, err.(Errors)...)
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return set, nil
}

// LoadFiles is the package-level LoadFiles, with caching.
func (l *Loader) LoadFiles(files []string) (*Set, error) {
	var (
		objs []*Object
		errs Errors
	)
	cache := make(map[string]parsedFile, len(files))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, Error{Source: model.Source{File: f}, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		sum := sha256.Sum256(data)
		pf, hit := l.cache[f]
		if !hit || pf.sum != sum {
			// Parsed objects are never modified afterwards, so they can be
			// shared between successive sets and snapshots.
			pf.sum = sum
			pf.objs, pf.errs = parseFile(f, data, l.opts)
		}
		cache[f] = pf
		objs = append(objs, pf.objs...)
		errs = append(errs, pf.errs...)
	}
	l.cache = cache
	errs = append(errs, validateSet(objs, l.opts)...)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	slices.SortFunc(objs, func(a, b *Object) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return &Set{Objects: objs, Options: l.opts}, nil
}

// ExpandPaths lists the config files named by paths: files as given,
// directories through Files.
func ExpandPaths(paths []string) ([]string, Errors) {
	var (
		files []string
		errs  Errors
	)
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, Error{Source: model.Source{File: p}, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		found, err := Files(p)
		if err != nil {
			errs = append(errs, Error{Source: model.Source{File: p}, Msg: err.Error()})
		}
		files = append(files, found...)
	}
	return files, errs
}

// validateSet applies the rules that need every object: unique names, and
// subsets referenced by routes that a DestinationRule defines. Objects that
// failed their own validation still take part in the duplicate check, so a
// broken copy of an object is not hidden.
func validateSet(objs []*Object, opts Options) Errors {
	var errs Errors
	rep := func(o *Object) *reporter {
		return &reporter{src: o.Source, node: o.node, kind: o.Kind, namespace: o.Namespace, name: o.Name, errs: &errs}
	}
	type key struct{ kind, ns, name string }
	seen := map[key]*Object{}
	var mesh *Object
	for _, o := range objs {
		if o.Kind == KindMeshConfig {
			if mesh != nil {
				rep(o).errorf(nil, "only one MeshConfig is allowed; another is at %s:%d (doc %d)", mesh.Source.File, mesh.Source.Line, mesh.Source.Document)
			}
			mesh = o
			continue
		}
		if o.Name == "" {
			continue
		}
		k := key{o.Kind, o.Namespace, o.Name}
		if prev, dup := seen[k]; dup {
			rep(o).errorf(root("metadata").field("name"), "duplicate %s %s/%s; first defined at %s:%d (doc %d)", o.Kind, o.Namespace, o.Name, prev.Source.File, prev.Source.Line, prev.Source.Document)
			continue
		}
		seen[k] = o
	}

	idx := newSubsetIndex(objs, opts)
	for _, o := range objs {
		vs, ok := o.Value.(*networkingv1.VirtualService)
		if !ok {
			continue
		}
		r := rep(o)
		check := func(p fieldPath, d *networking.Destination) {
			if d == nil || d.Subset == "" {
				return
			}
			if msg := idx.missing(resolveHost(d.Host, vs.Namespace, opts.DomainSuffix), d.Subset); msg != "" {
				r.errorf(p.field("subset"), "%s", msg)
			}
		}
		for i, h := range vs.Spec.Http {
			for j, d := range h.Route {
				check(spec.field("http").index(i).field("route").index(j).field("destination"), d.Destination)
			}
			check(spec.field("http").index(i).field("mirror"), h.Mirror)
			for j, m := range h.Mirrors {
				check(spec.field("http").index(i).field("mirrors").index(j).field("destination"), m.Destination)
			}
		}
		for i, t := range vs.Spec.Tcp {
			for j, d := range t.Route {
				check(spec.field("tcp").index(i).field("route").index(j).field("destination"), d.Destination)
			}
		}
		for i, t := range vs.Spec.Tls {
			for j, d := range t.Route {
				check(spec.field("tls").index(i).field("route").index(j).field("destination"), d.Destination)
			}
		}
	}
	return errs
}

// resolveHost expands a short name (no dots) to <name>.<ns>.svc.<domain>, as
// Istio resolves VirtualService and DestinationRule hosts.
func resolveHost(host, namespace, domain string) string {
	if host == "*" || strings.Contains(host, ".") {
		return host
	}
	return host + "." + namespace + ".svc." + domain
}

type drSubsets struct {
	host    string // resolved; may be a wildcard
	ref     string // namespace/name
	subsets []string
}

// subsetIndex finds the DestinationRule for a host: exact hosts by map,
// wildcard hosts by scan (they are few).
type subsetIndex struct {
	exact     map[string]*drSubsets
	wildcards []*drSubsets
}

func newSubsetIndex(objs []*Object, opts Options) subsetIndex {
	idx := subsetIndex{exact: map[string]*drSubsets{}}
	for _, o := range objs {
		dr, ok := o.Value.(*networkingv1.DestinationRule)
		if !ok {
			continue
		}
		e := &drSubsets{host: resolveHost(dr.Spec.Host, dr.Namespace, opts.DomainSuffix), ref: dr.Namespace + "/" + dr.Name}
		for _, s := range dr.Spec.Subsets {
			e.subsets = append(e.subsets, s.Name)
		}
		if strings.Contains(e.host, "*") {
			idx.wildcards = append(idx.wildcards, e)
		} else if _, dup := idx.exact[strings.ToLower(e.host)]; !dup {
			idx.exact[strings.ToLower(e.host)] = e
		}
	}
	return idx
}

// missing returns why subset is not available for host, or "" when a
// DestinationRule for the host (exact, or else the most specific wildcard) defines it.
func (idx subsetIndex) missing(host, subset string) string {
	best := idx.exact[strings.ToLower(host)]
	if best == nil {
		for _, e := range idx.wildcards {
			if hostMatches(e.host, host) && (best == nil || specificity(e.host) > specificity(best.host)) {
				best = e
			}
		}
	}
	if best == nil {
		return fmt.Sprintf("subset %q is used but no DestinationRule exists for host %q; add a DestinationRule that defines the subset", subset, host)
	}
	if slices.Contains(best.subsets, subset) {
		return ""
	}
	return fmt.Sprintf("subset %q is not defined in DestinationRule %s for host %q (defined: %s)", subset, best.ref, host, strings.Join(best.subsets, ", "))
}

func hostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(host, pattern[1:])
	}
	return strings.EqualFold(pattern, host)
}

func specificity(pattern string) int {
	if strings.HasPrefix(pattern, "*") {
		return len(pattern) - 1
	}
	return 1 << 20
}
