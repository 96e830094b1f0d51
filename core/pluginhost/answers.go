package pluginhost

import (
	"github.com/heraldhq/herald/core/rpc"
	"github.com/heraldhq/herald/sdk/hostcheck"
	pluginpb "github.com/heraldhq/herald/sdk/proto"
)

// What a plugin answers reaches clients inside frames the core writes by
// splicing bytes (rpc.AppendResult, rpc.AppendError) and HTTP bodies: a
// plugin is code the operator may not have written, so each answer is
// checked here, once, before anything splices it. The checks are
// sdk/hostcheck's, the ones sdktest applies too, so that a plugin's own
// tests hold it to what Herald does.

func rpcError(e *hostcheck.Error) *rpc.Error {
	if e == nil {
		return nil
	}
	return &rpc.Error{Code: e.Code, Message: e.Message, Data: e.Data}
}

// checkResult refuses a call's result that is not exactly one JSON value
// (hostcheck.Result).
func checkResult(plugin, method string, res []byte) *rpc.Error {
	return rpcError(hostcheck.Result(plugin, method, res))
}

// fromPBError turns a plugin's error into the one its caller gets
// (hostcheck.PluginError).
func fromPBError(plugin string, e *pluginpb.Error) *rpc.Error {
	return rpcError(hostcheck.PluginError(plugin, int(e.GetCode()), e.GetMessage(), e.GetData()))
}

// clientParams checks the params of a plugin's call to a client
// (hostcheck.ClientParams).
func clientParams(plugin, method string, params []byte) ([]byte, *rpc.Error) {
	p, e := hostcheck.ClientParams(plugin, method, params)
	return p, rpcError(e)
}

// maxRefusalReason bounds a refusal's reason (hostcheck.RefusalReason).
const maxRefusalReason = hostcheck.MaxRefusalReason

// refusals checks a plugin's answer to Authorize (hostcheck.Refusals).
func refusals(plugin string, asked []string, rs []*pluginpb.Refusal) ([]Refusal, *rpc.Error) {
	checked, e := hostcheck.Refusals(plugin, asked, rs)
	if e != nil {
		return nil, rpcError(e)
	}
	if checked == nil {
		return nil, nil
	}
	out := make([]Refusal, len(checked))
	for i, r := range checked {
		out[i] = Refusal{Channel: r.Channel, Code: r.Code, Reason: r.Reason}
	}
	return out, nil
}
