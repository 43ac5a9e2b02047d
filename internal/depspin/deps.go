// Package depspin is a temporary anchor so that go.sum holds every module the
// packages under construction import. It is removed once they import them.
package depspin

import (
	_ "github.com/coreos/go-iptables/iptables"
	_ "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	_ "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/vishvananda/netlink"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/xds"
	_ "google.golang.org/grpc/credentials/xds"
	_ "google.golang.org/grpc/health"
	_ "istio.io/api/networking/v1"
	_ "istio.io/api/security/v1beta1"
	_ "istio.io/api/mesh/v1alpha1"
	_ "istio.io/client-go/pkg/apis/networking/v1"
	_ "istio.io/client-go/pkg/apis/security/v1"
	_ "istio.io/client-go/pkg/clientset/versioned"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/api/discovery/v1"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/common/expfmt"
	_ "github.com/spf13/cobra"
	_ "sigs.k8s.io/yaml"
	_ "github.com/moby/buildkit/frontend/dockerfile/parser"
	_ "github.com/moby/buildkit/frontend/dockerfile/instructions"
	_ "golang.org/x/sync/errgroup"
)

import (
	_ "github.com/cenkalti/backoff/v5"
	_ "github.com/go-jose/go-jose/v4/jwt"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/miekg/dns"
	_ "golang.org/x/time/rate"
	_ "gomodules.xyz/jsonpatch/v2"
	_ "k8s.io/apimachinery/pkg/runtime/serializer"
	_ "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/utils/clock/testing"
	_ "google.golang.org/grpc/xds/csds"
	_ "google.golang.org/grpc/health/grpc_health_v1"
	_ "github.com/envoyproxy/go-control-plane/pkg/test/v3"
	_ "istio.io/api/security/v1alpha1"
	_ "istio.io/api/networking/v1alpha3"
)
