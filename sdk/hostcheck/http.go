package hostcheck

import (
	"net/http"
	"strings"

	"github.com/heraldhq/herald/sdk/codes"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// Herald serves the plugins' declared HTTP routes behind its own: a
// request no route serves, or whose caller the route does not take, is
// answered by the host with a JSON body {"error": {...}} (the Error's JSON
// form), never reaching a plugin.

// Unrouted is the answer to a request that no route of mux serves: 405,
// with the methods for which a route serves its path (the Allow header),
// or 404 when none does.
func Unrouted(mux *http.ServeMux, r *http.Request) (status int, allow string, e *Error) {
	if allow := allowedMethods(mux, r); allow != "" {
		return http.StatusMethodNotAllowed, allow, errorf(codes.InvalidRequest, "%s %s: use %s", r.Method, r.URL.Path, allow)
	}
	return http.StatusNotFound, "", errorf(codes.MethodNotFound, "no route for %s %s", r.Method, r.URL.Path)
}

// allowedMethods lists the methods for which a route serves r's path
// ("GET, POST"), or "" when none does: a wrong method is a 405, as
// everywhere else in herald, rather than a 404.
func allowedMethods(mux *http.ServeMux, r *http.Request) string {
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if method == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := mux.Handler(probe); pattern != "" {
			allow = append(allow, method)
		}
	}
	return strings.Join(allow, ", ")
}

// RouteCaller refuses (403, -32003) a caller that authenticated but is not
// one the route takes: an API key on a route for user tokens, a user token
// on a route for API keys (backend: the caller holds an API key).
func RouteCaller(auth pluginpb.RouteAuth, backend bool) *Error {
	switch auth {
	case pluginpb.RouteAuth_ROUTE_AUTH_TOKEN:
		if backend {
			return errorf(codes.Forbidden, "this route needs a user token, not an API key")
		}
	case pluginpb.RouteAuth_ROUTE_AUTH_API_KEY:
		if !backend {
			return errorf(codes.Forbidden, "this route needs an API key")
		}
	}
	return nil
}

// ForwardedHeader reports whether a request header is forwarded to the
// plugin: credentials stay with the host, the plugin gets the caller.
func ForwardedHeader(name string) bool {
	return name != "Authorization" && name != "Cookie"
}
