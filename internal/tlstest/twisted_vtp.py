"""VTP peers on Twisted's endpoints, the stack Comet runs on (Twisted,
pyOpenSSL, OpenSSL), for the TLS interoperability tests: each takes the
endpoint description Comet would be given, verbatim.

  twisted_vtp.py author TARGET EVENT_FILE
      connect to TARGET (clientFromString), send the event, print the
      receipt's role and Origin, exit.
  twisted_vtp.py subscriber TARGET COUNT
      connect to TARGET, answer authenticate and iamalive, ack events,
      print each event's bytes (base64) until COUNT have arrived, exit.
  twisted_vtp.py broadcaster LISTEN EVENT_FILE
      listen on LISTEN (serverFromString), print the port, send the event
      to the first subscriber and print its acknowledgement, exit.

Output is JSON lines on stdout; a failure is {"error": "..."} and exit 1.
"""
import base64
import json
import struct
import sys
import time

from twisted.internet import endpoints, protocol, reactor

TRN = "http://telescope-networks.org/schema/Transport/v1.1"
LOCAL = "ivo://test.twisted/peer"


done = []


def finish():
    done.append(True)
    reactor.stop()


def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def fail(why):
    if done:
        return
    out(error=str(why))
    finish()
    status.append(1)


status = []


def transport(role, origin):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<trn:Transport xmlns:trn="%s" role="%s" version="1.0">'
            "<Origin>%s</Origin><Response>%s</Response><TimeStamp>%s</TimeStamp>"
            "</trn:Transport>" % (TRN, role, origin, LOCAL, stamp))
    return body.encode()


def role_and_origin(payload):
    # Enough of a parse for these tests: the root's role attribute and the
    # Origin element (Transport) or the ivorn (VOEvent).
    text = payload.decode("utf-8", "replace")
    head = text[text.find("<", text.find("?>") + 2):]
    role = head.split('role="', 1)[1].split('"', 1)[0] if 'role="' in head[:400] else ""
    if "Transport" in head[:200]:
        origin = text.split("<Origin>", 1)[1].split("</Origin>", 1)[0] if "<Origin>" in text else ""
        return "transport:" + role, origin
    ivorn = head.split('ivorn="', 1)[1].split('"', 1)[0] if 'ivorn="' in head else ""
    return "event:" + role, ivorn


class Framed(protocol.Protocol):
    def connectionMade(self):
        self.buf = b""

    def send(self, payload):
        self.transport.write(struct.pack(">I", len(payload)) + payload)

    def dataReceived(self, data):
        self.buf += data
        while len(self.buf) >= 4:
            (n,) = struct.unpack(">I", self.buf[:4])
            if len(self.buf) < 4 + n:
                return
            payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
            self.frame(payload)

    def connectionLost(self, reason):
        fail("connection lost: %s" % reason.getErrorMessage())


class Author(Framed):
    def __init__(self, event):
        self.event = event

    def connectionMade(self):
        Framed.connectionMade(self)
        self.send(self.event)

    def frame(self, payload):
        kind, origin = role_and_origin(payload)
        out(receipt=kind, origin=origin)
        finish()


class Subscriber(Framed):
    def __init__(self, count):
        self.left = count

    def frame(self, payload):
        kind, origin = role_and_origin(payload)
        if kind == "transport:authenticate":
            self.send(transport("authenticate", origin))
        elif kind == "transport:iamalive":
            self.send(transport("iamalive", origin))
        elif kind.startswith("event:"):
            self.send(transport("ack", origin))
            out(event=base64.b64encode(payload).decode())
            self.left -= 1
            if self.left == 0:
                finish()


class Broadcaster(Framed):
    def __init__(self, event):
        self.event = event

    def connectionMade(self):
        Framed.connectionMade(self)
        self.send(self.event)

    def frame(self, payload):
        kind, origin = role_and_origin(payload)
        if kind == "transport:ack":
            out(acked=origin)
            finish()


def main():
    mode, desc = sys.argv[1], sys.argv[2]
    if mode in ("author", "broadcaster"):
        with open(sys.argv[3], "rb") as f:
            event = f.read()
    if mode == "author":
        d = endpoints.connectProtocol(endpoints.clientFromString(reactor, desc), Author(event))
    elif mode == "subscriber":
        d = endpoints.connectProtocol(endpoints.clientFromString(reactor, desc), Subscriber(int(sys.argv[3])))
    elif mode == "broadcaster":
        d = endpoints.serverFromString(reactor, desc).listen(
            protocol.Factory.forProtocol(lambda: Broadcaster(event)))
        d.addCallback(lambda port: out(port=port.getHost().port))
    else:
        fail("unknown mode " + mode)
    d.addErrback(lambda f: fail(f.getErrorMessage()))
    reactor.callLater(60, fail, "timed out")
    reactor.run()
    sys.exit(1 if status else 0)


if __name__ == "__main__":
    main()
