/** Public API of the sidecar injector (webhook and offline `wren inject`). */
export { injectPod, probePorts, type InjectResult } from './inject-pod.js';
export { mutate, mutateWithReason, AdmissionError, type AdmissionReview, type MutateOutcome } from './admission.js';
export { createInjectorServer, type InjectorServerOptions } from './injector-server.js';
export { applyPatch, escapePointer, type JsonPatchOp } from './json-patch.js';
export { DEFAULT_INJECT_OPTIONS, WREN_IMAGE, resolveInjectOptions, type InjectOptions, type ProxyResources } from './options.js';
export { A as ANNOTATIONS, INIT_CONTAINER, PROXY_CONTAINER, parseCidrList, parsePortList } from './annotations.js';
export { injectWorkloads, type InjectWorkloadsResult } from './inject-workloads.js';
