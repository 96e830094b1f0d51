package config

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// evalContext is what expressions in a config file can use: the env function
// and nothing else, so that a config reads the same everywhere.
func evalContext() *hcl.EvalContext {
	return &hcl.EvalContext{
		Functions: map[string]function.Function{"env": envFunc},
	}
}

// envFunc is env("NAME") and env("NAME", "default"). A variable that is set
// but empty counts as unset, like ${NAME:-default} in a shell, because
// container tooling often passes unset variables as empty ones.
var envFunc = function.New(&function.Spec{
	Description: "Reads an environment variable, with an optional default.",
	Params:      []function.Parameter{{Name: "name", Type: cty.String}},
	VarParam:    &function.Parameter{Name: "default", Type: cty.String},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		name := args[0].AsString()
		if len(args) > 2 {
			return cty.NilVal, fmt.Errorf(`env(%q, ...): takes a name and at most one default, got %d arguments`, name, len(args))
		}
		if name == "" {
			return cty.NilVal, fmt.Errorf(`env(""): the variable name is empty`)
		}
		if v := os.Getenv(name); v != "" {
			return cty.StringVal(v), nil
		}
		if len(args) == 2 {
			return args[1], nil
		}
		return cty.NilVal, fmt.Errorf(`env(%q): environment variable %s is not set; set it or give a default: env(%q, "...")`, name, name, name)
	},
})
