# The rules of the `decide` benchmark's full-policy route (benches/decide.rs), written in Rego
# for the policy-engine peer (regorus). The route table comes in as `data.fapi`; the request,
# the verified token's claims, the client certificate thumbprint and the consent record the
# token names come in as `input` (already fetched: the engine does no I/O, like `decide`).
#
# Pattern rule (delegation actors/chain): an exact string, or `prefix*` matching any longer
# string that starts with `prefix`, as fapi-guard compiles them.
package fapi.guard

import rego.v1

default allow := false

allow if {
	some route in data.fapi.routes
	route.method == input.request.method
	params := path_params(route.segments, input.request.path)
	token_ok
	binding_ok(route.binding)
	scopes_ok(route.scopes)
	consent_ok(route.consent, params)
	delegation_ok(route.delegation)
	purpose_ok(route.purpose)
}

# Route match: same number of segments, literal segments equal, `{Name}` segments capture.
path_params(segments, path) := params if {
	parts := split(trim_prefix(path, "/"), "/")
	count(parts) == count(segments)
	every i, seg in segments {
		segment_ok(seg, parts[i])
	}
	params := {trim(seg, "{}"): parts[i] | some i, seg in segments; startswith(seg, "{")}
}

segment_ok(seg, part) if seg == part

segment_ok(seg, part) if {
	startswith(seg, "{")
	part != ""
}

# Token validity that depends on the request: time and audience.
token_ok if {
	input.token.iss == data.fapi.issuer
	input.token.exp > input.now
	input.token.iat <= input.now
	input.token.aud == data.fapi.audience
}

# RFC 8705: the token's cnf.x5t#S256 equals the thumbprint of the connection's certificate.
binding_ok("mtls") if {
	input.client_cert_x5t != ""
	input.token.cnf["x5t#S256"] == input.client_cert_x5t
}

scopes_ok(required) if {
	granted := split(input.token.scope, " ")
	every s in required {
		s in granted
	}
}

consent_ok(rule, params) if {
	rec := input.consent
	rec.id == input.token[rule.claim]
	rec.client_id == input.token.client_id
	rec.subject == input.token.sub
	rec.status in rule.status
	rec.expires_at > input.now
	every p in rule.permissions {
		p in rec.permissions
	}
	params[rule.account_param] in rec.accounts
}

# RFC 8693 §4.1: no `act`, nothing to check; otherwise depth, current actor, every prior hop.
delegation_ok(_) if not input.token.act

delegation_ok(rule) if {
	chain := act_chain
	count(chain) >= 1
	count(chain) <= rule.max_depth
	some p in rule.actors
	pattern_match(p, chain[0].sub)
	prior_hops_ok(rule, array.slice(chain, 1, count(chain)))
}

# A route without `chain` does not look at prior hops.
prior_hops_ok(rule, _) if not rule.chain

prior_hops_ok(rule, hops) if {
	rule.chain
	every hop in hops {
		some q in rule.chain
		pattern_match(q, hop.sub)
	}
}

# The nested `act` objects, outermost (current actor) first.
act_chain := [by_depth[d] | some d in numbers.range(0, count(by_depth) - 1)] if {
	by_depth := {count(path): node |
		some path, node
		walk(input.token.act, [path, node])
		only_act(path)
	}
}

only_act(path) if {
	every k in path {
		k == "act"
	}
}

pattern_match(p, s) if {
	not endswith(p, "*")
	p == s
}

pattern_match(p, s) if {
	endswith(p, "*")
	prefix := trim_suffix(p, "*")
	startswith(s, prefix)
	count(s) > count(prefix)
}

# The consent record's purpose when it has one, else the token's.
purpose_ok(allowed) if effective_purpose in allowed

effective_purpose := input.consent.purpose

effective_purpose := input.token.purpose if not input.consent.purpose
