// Command argocd-health evaluates Sluice's Argo CD health check with Argo CD's own code: the
// argocd-cm ConfigMap is read by Argo CD's settings manager (as the application controller reads
// it), and each object's health is computed by gitops-engine's health.GetResourceHealth with the
// resource overrides that yields, which runs the Lua in Argo CD's Lua VM (util/lua).
//
//	argocd-health -config integrations/argocd/argocd-cm.yaml [-json] [FILE...]
//
// Objects come from the files named, or stdin: JSON or YAML, several documents, or a List. Each
// prints KIND/NAME, STATUS, MESSAGE (or one JSON line with -json).
//
//	argocd-health -config argocd-cm.yaml -app application.yaml -git GIT.yaml -live LIVE.json
//
// compares an object as Git has it with the live one as Argo CD's diff does (gitops-engine's
// diff.Diff with Argo CD's ignore-differences normalizer, built from the Application's
// ignoreDifferences and argocd-cm's overrides) and prints {"modified": true|false, "diff": "..."}.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/pkg/diff"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/health"
	log "github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/argo/normalizers"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
)

type line struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func objects(r io.Reader) ([]*unstructured.Unstructured, error) {
	decoder := utilyaml.NewYAMLOrJSONDecoder(bufio.NewReader(r), 4096)
	var out []*unstructured.Unstructured
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		// The unstructured JSON decoder keeps integers int64, as the API server's objects have them.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range list.Items {
				out = append(out, &list.Items[i])
			}
			continue
		}
		out = append(out, u)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "argocd-health: "+format+"\n", args...)
	os.Exit(2)
}

// overrides reads an argocd-cm ConfigMap the way the application controller does.
func overrides(path string) lua.ResourceHealthOverrides {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		fail("%s: %v", path, err)
	}
	if cm.Namespace == "" {
		cm.Namespace = "argocd"
	}
	mgr := settings.NewSettingsManager(context.Background(), fake.NewClientset(&cm), cm.Namespace)
	found, err := mgr.GetResourceOverrides()
	if err != nil {
		fail("%s: Argo CD refuses it: %v", path, err)
	}
	return found
}

func one(path string) *unstructured.Unstructured {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	objs, err := objects(bytes.NewReader(data))
	if err != nil || len(objs) != 1 {
		fail("%s: want one object (%v)", path, err)
	}
	return objs[0]
}

// compare prints whether Argo CD would call the live object out of sync with Git's.
func compare(found lua.ResourceHealthOverrides, appPath, gitPath, livePath string) {
	data, err := os.ReadFile(appPath)
	if err != nil {
		fail("%v", err)
	}
	var app v1alpha1.Application
	if err := yaml.UnmarshalStrict(data, &app); err != nil {
		fail("%s: %v", appPath, err)
	}
	normalizer, err := normalizers.NewIgnoreNormalizer(app.Spec.IgnoreDifferences, found,
		normalizers.IgnoreNormalizerOpts{JQExecutionTimeout: 5 * time.Second})
	if err != nil {
		fail("%s: Argo CD refuses its ignoreDifferences: %v", appPath, err)
	}
	result, err := diff.Diff(context.Background(), one(gitPath), one(livePath), diff.WithNormalizer(normalizer))
	if err != nil {
		fail("diff: %v", err)
	}
	out := map[string]any{"modified": result.Modified}
	if result.Modified {
		out["diff"] = fmt.Sprintf("git: %s\nlive: %s", result.PredictedLive, result.NormalizedLive)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func main() {
	config := flag.String("config", "", "the argocd-cm ConfigMap (YAML) holding the resource customizations")
	asJSON := flag.Bool("json", false, "one JSON object per line")
	app := flag.String("app", "", "an Application (YAML) whose ignoreDifferences apply to -git and -live")
	gitPath := flag.String("git", "", "the object as Git has it (with -app)")
	livePath := flag.String("live", "", "the object as the cluster has it (with -app)")
	flag.Parse()
	log.SetLevel(log.WarnLevel) // the settings manager's informer chatter
	if *config == "" {
		fail("-config is required")
	}
	healthOverrides := overrides(*config)
	if *app != "" {
		compare(healthOverrides, *app, *gitPath, *livePath)
		return
	}
	var all []*unstructured.Unstructured
	read := func(name string, r io.Reader) {
		objs, err := objects(r)
		if err != nil {
			fail("%s: %v", name, err)
		}
		all = append(all, objs...)
	}
	if flag.NArg() == 0 {
		read("stdin", os.Stdin)
	}
	for _, name := range flag.Args() {
		data, err := os.ReadFile(name)
		if err != nil {
			fail("%v", err)
		}
		read(name, bytes.NewReader(data))
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range all {
		result, err := health.GetResourceHealth(obj, healthOverrides)
		if err != nil {
			fmt.Fprintf(os.Stderr, "argocd-health: %s/%s: %v\n", obj.GetKind(), obj.GetName(), err)
			os.Exit(1)
		}
		if result == nil {
			fmt.Fprintf(os.Stderr, "argocd-health: %s/%s: no health check in %s applies\n", obj.GetKind(), obj.GetName(), *config)
			os.Exit(1)
		}
		l := line{Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
			Status: string(result.Status), Message: result.Message}
		if *asJSON {
			_ = out.Encode(l)
		} else {
			fmt.Printf("%s/%s\t%s\t%s\n", l.Kind, l.Name, l.Status, l.Message)
		}
	}
}
