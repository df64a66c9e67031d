// A module of its own, without grpc-js: the sidecar's config parser checks discovery.services
// against it, and a sidecar on a file config must not load grpc-js (test/sidecar-module-loads.test.ts).

/**
 * The most service keys one Subscribe may name, and the most labels it may claim. A proxy's
 * filter is its egress list (discovery.services, from the wren.io/egress-services
 * annotation, which Kubernetes bounds with all of a pod's annotations to 256 KiB: at most
 * ~50,000 `name.namespace` keys of a few characters, a list no one writes by hand) and its
 * labels are its pod's. A Subscribe was bounded only by the 4 MiB a gRPC message may be, and
 * each stream keeps its filter (the keys, a Set of them, their sorted join as the cache key)
 * for as long as it lives: one Subscribe naming 600,000 distinct short keys held ~44 MB of
 * the control plane's heap and took seconds of its one event loop (every other proxy's push
 * waited), and a pod holds 8 streams, a plaintext client on loopback any number (adv53,
 * /work/adv53/filter-mem.mjs). Past either the control plane refuses the stream INVALID_ARGUMENT
 * (`subscribe-too-large`) before anything of it is kept (discovery-server.ts), and a proxy
 * refuses a config with more (proxy-config.ts discovery.services) rather than retrying for
 * ever. Istio's Sidecar egress hosts are bounded only by the object's size; Envoy's delta
 * xDS bounds a subscription's resource
 * names by the message size, as this did.
 */
export const MAX_SUBSCRIBE_SERVICES = 16_384;
export const MAX_SUBSCRIBE_LABELS = 1024;
