package webhook

import (
	"bytes"
	"context"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/meshlite/meshlite/istiod-lite/kubeclient"
)

// Names of the webhook configurations in deploy/kubernetes/webhooks.yaml.
const (
	ValidatingConfigName = "istiod-lite-validator"
	MutatingConfigName   = "istiod-lite-sidecar-injector"
)

// PatchCABundle writes bundle (the CA's roots, which sign the webhook serving
// certificate) into every webhook of the named configurations, so the API
// server trusts istiod-lite without a pre-provisioned certificate. Missing
// configurations are skipped: the webhooks are optional.
func PatchCABundle(ctx context.Context, client *kubeclient.Clients, bundle []byte, validating, mutating string) error {
	v := client.ValidatingWebhookConfigurations()
	if err := patchOne(ctx, "ValidatingWebhookConfiguration", validating, bundle, v.Get, v.Update,
		func(c *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = &c.Webhooks[i].ClientConfig
			}
			return out
		}); err != nil {
		return err
	}
	m := client.MutatingWebhookConfigurations()
	return patchOne(ctx, "MutatingWebhookConfiguration", mutating, bundle, m.Get, m.Update,
		func(c *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = &c.Webhooks[i].ClientConfig
			}
			return out
		})
}

// patchOne sets bundle on every webhook of one configuration (of either
// kind), updating it only when something changed; a missing one is skipped.
func patchOne[T any](ctx context.Context, kind, name string, bundle []byte,
	get func(context.Context, string, metav1.GetOptions) (T, error),
	update func(context.Context, T, metav1.UpdateOptions) (T, error),
	clientConfigs func(T) []*admissionregistrationv1.WebhookClientConfig,
) error {
	if name == "" {
		return nil
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cfg, err := get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		for _, cc := range clientConfigs(cfg) {
			if !bytes.Equal(cc.CABundle, bundle) {
				cc.CABundle, changed = bundle, true
			}
		}
		if !changed {
			return nil
		}
		_, err = update(ctx, cfg, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patching the CA bundle of %s %s: %w (istiod-lite needs get/update on it: deploy/kubernetes/rbac.yaml)", kind, name, err)
	}
	return nil
}
