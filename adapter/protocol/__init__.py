"""The protocol layer: everything that talks to the identity server, written once as sans-IO
flows (client authentication, discovery, tokens, the clients that drive the flows)."""
