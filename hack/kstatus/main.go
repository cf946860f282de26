// Command kstatus prints what sigs.k8s.io/cli-utils' kstatus (the library behind Flux's health
// checks, `kpt live status` and `kapply`) computes for each object it is given: the status
// (InProgress, Current, Failed, ...) and its message. Objects come from the files named on the
// command line, or stdin without any: JSON or YAML, one object, several YAML documents, or a List.
//
//	kstatus [-json] [FILE...]
//
// With -json each object is one line {"kind","namespace","name","status","message"}; otherwise
// tab-separated columns KIND/NAME, STATUS, MESSAGE.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

// objects decodes every object in r: YAML or JSON documents, Lists unrolled.
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

func main() {
	asJSON := flag.Bool("json", false, "one JSON object per line")
	flag.Parse()
	var all []*unstructured.Unstructured
	read := func(name string, r io.Reader) {
		objs, err := objects(r)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s: %v\n", name, err)
			os.Exit(2)
		}
		all = append(all, objs...)
	}
	if flag.NArg() == 0 {
		read("stdin", os.Stdin)
	}
	for _, name := range flag.Args() {
		data, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
			os.Exit(2)
		}
		read(name, bytes.NewReader(data))
	}
	out := json.NewEncoder(os.Stdout)
	for _, obj := range all {
		result, err := status.Compute(obj)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s/%s: %v\n", obj.GetKind(), obj.GetName(), err)
			os.Exit(1)
		}
		l := line{Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
			Status: result.Status.String(), Message: result.Message}
		if *asJSON {
			_ = out.Encode(l)
		} else {
			fmt.Printf("%s/%s\t%s\t%s\n", l.Kind, l.Name, l.Status, l.Message)
		}
	}
}
