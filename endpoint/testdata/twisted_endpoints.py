"""Parse endpoint descriptions with Twisted, as Comet does, and print what
Twisted made of each, for endpoint/twisted_test.go to compare with this
project's parser.

Input (stdin): a JSON list of {"side": "server"|"client", "desc": str,
"port": int}. Output (stdout): a JSON list, one object per input: {"ok":
false, "error": str} or {"ok": true, ...the endpoint's fields}.

Client descriptions are coerced as Comet coerces --remote and comet-sendvo's
TARGET: tried as given, then with "tcp:" before, then with ":PORT" after,
then both; the first that Twisted accepts wins.
"""
import json
import sys

from twisted.internet import endpoints, reactor


def cn(x509):
    return x509.get_subject().CN


def server(desc):
    e = endpoints.serverFromString(reactor, desc)
    kind = type(e).__name__
    out = {"type": kind}
    if kind in ("TCP4ServerEndpoint", "TCP6ServerEndpoint", "SSL4ServerEndpoint"):
        out.update(port=e._port, interface=e._interface, backlog=e._backlog)
    if kind == "SSL4ServerEndpoint":
        opts = e._sslContextFactory
        out["cert"] = cn(opts.certificate)
        out["chain"] = [cn(c) for c in (opts.extraCertChain or [])]
    if kind == "UNIXServerEndpoint":
        out.update(path=e._address, mode=e._mode)
    return out


def client(desc):
    e = endpoints.clientFromString(reactor, desc)
    kind = type(e).__name__
    out = {"type": kind}
    if kind == "TCP4ClientEndpoint":
        bind = e._bindAddress[0] if e._bindAddress else ""
        out.update(host=e._host, port=e._port, timeout=e._timeout, bindAddress=bind)
    elif kind == "_WrapperEndpoint":  # tls:
        w = e._wrappedEndpoint
        creator = e._wrapperFactory.__closure__[0].cell_contents
        out.update(type="tls", host=w._hostText, port=w._port, timeout=w._timeout,
                   bindAddress=w._bindAddress or "", serverName=creator._hostname)
    elif kind == "UNIXClientEndpoint":
        out.update(path=e._path, timeout=e._timeout)
    return out


def coerced(desc, port):
    tries = [desc, "tcp:" + desc, "%s:%d" % (desc, port), "tcp:%s:%d" % (desc, port)]
    first = None
    for t in tries:
        try:
            return client(t)
        except Exception as ex:  # Twisted raises many kinds
            if first is None:
                first = ex
    raise first


results = []
for case in json.load(sys.stdin):
    try:
        if case["side"] == "server":
            r = server(case["desc"])
        else:
            r = coerced(case["desc"], case["port"])
        r["ok"] = True
    except Exception as ex:
        r = {"ok": False, "error": "%s: %s" % (type(ex).__name__, ex)}
    results.append(r)
json.dump(results, sys.stdout)
