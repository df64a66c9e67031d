/**
 * `wren inject [FILE|-]`: add the Wren sidecar to the workloads in a YAML file, offline,
 * with exactly the patch the injection webhook would apply (like `linkerd inject` /
 * `istioctl kube-inject`). Prints YAML on stdout, one report line per workload on
 * stderr. Exit codes: 0 ok, 1 unreadable input, 2 bad usage.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { injectWorkloads } from '../control-plane/injector/inject-workloads.js';
import { DEFAULT_INJECT_OPTIONS, type InjectOptions } from '../control-plane/injector/options.js';
import { CONTROL_PLANE_ADDRESS_PATTERN, TRUST_DOMAIN_PATTERN } from '../contract/identity.js';
import { trustBundleProblem } from '../contract/trust-anchors.js';

type Out = (s: string) => void;

const D = DEFAULT_INJECT_OPTIONS;
const USAGE = `Usage: wren inject [FILE|-] [flags]

Reads Kubernetes YAML (multi-document; stdin when FILE is - or omitted) and adds the
Wren proxy to every Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job and
CronJob (and v1 Lists of them). Other kinds pass through unchanged. Pods that opt out
(wren.io/inject: disabled) or are already injected are left alone.

Flags:
  --classic                 classic sidecar (first container + postStart await) for
                            clusters older than Kubernetes 1.29 (default: native sidecar)
  --image IMAGE             proxy image (default ${D.image})
  --trust-domain TD         SPIFFE trust domain (default ${D.trustDomain}): lowercase
                            letters, digits, '.' and '-', as the proxy and control plane take it
  --control-plane HOST:PORT control plane gRPC address (default ${D.controlPlaneAddress})
  --trust-bundle FILE       PEM trust anchors (the mesh's root CA certificates) to give
                            the proxy; without it the proxies refuse to start until
                            WREN_TRUST_BUNDLE is set
  --log-level LEVEL         debug, info, warn, error (default ${D.logLevel})
  -h, --help                show this help
`;

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer | string>) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks).toString('utf8');
}

export async function injectCommand(argv: string[], out: Out, err: Out, stdin: NodeJS.ReadableStream = process.stdin): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        classic: { type: 'boolean' },
        image: { type: 'string' },
        'trust-domain': { type: 'string' },
        'control-plane': { type: 'string' },
        'trust-bundle': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
    if (positionals.length > 1) throw new Error(`expected one FILE, got ${positionals.length}`);
    const lvl = values['log-level'];
    if (lvl !== undefined && !['debug', 'info', 'warn', 'error'].includes(lvl as string)) throw new Error(`--log-level: unknown level ${String(lvl)}`);
    // The proxy's own rules (proxy/config/proxy-config.ts): a value it would refuse at start is refused here.
    const td = values['trust-domain'];
    if (td !== undefined && !TRUST_DOMAIN_PATTERN.test(td as string))
      throw new Error(`--trust-domain: expected a trust domain (lowercase letters, digits, '.' and '-', e.g. cluster.local), got ${JSON.stringify(td)}`);
    const cp = values['control-plane'];
    if (cp !== undefined && !CONTROL_PLANE_ADDRESS_PATTERN.test(cp as string))
      throw new Error(`--control-plane: expected HOST:PORT (e.g. ${D.controlPlaneAddress}), got ${JSON.stringify(cp)}`);
  } catch (e) {
    err(`wren inject: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    out(USAGE);
    return 0;
  }
  const file = positionals[0] ?? '-';
  let text: string;
  const opts: Partial<InjectOptions> = {
    nativeSidecars: !values.classic,
    ...(values.image ? { image: values.image as string } : {}),
    ...(values['trust-domain'] ? { trustDomain: values['trust-domain'] as string } : {}),
    ...(values['control-plane'] ? { controlPlaneAddress: values['control-plane'] as string } : {}),
    ...(values['log-level'] ? { logLevel: values['log-level'] as InjectOptions['logLevel'] } : {}),
  };
  try {
    text = file === '-' ? await readAll(stdin) : await readFile(file, 'utf8');
    if (values['trust-bundle']) Object.assign(opts, { trustBundlePem: await readFile(values['trust-bundle'] as string, 'utf8') });
  } catch (e) {
    err(`wren inject: ${(e as Error).message}\n`);
    return 1;
  }
  if (values['trust-bundle']) {
    const problem = trustBundleProblem(opts.trustBundlePem!);
    if (problem) {
      err(`wren inject: --trust-bundle: ${values['trust-bundle'] as string} ${problem}\n\n${USAGE}`);
      return 2;
    }
  }
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) return (err(`wren inject: ${file}: not YAML documents\n`), 1);
  const bad = docs.find((d) => d.errors.length);
  if (bad) {
    err(`wren inject: ${file}: ${bad.errors[0].message}\n`);
    return 1;
  }
  const parts: string[] = [];
  let injected = 0;
  for (const doc of docs) {
    const obj: unknown = doc.toJS();
    if (obj === null || obj === undefined) continue;
    let r: ReturnType<typeof injectWorkloads>;
    try {
      r = injectWorkloads(obj, opts);
    } catch (e) {
      // A pod template the injector cannot read (control-plane/injector/pod-shape.ts): the field's path, no stack.
      err(`wren inject: ${file}: ${(e as Error).message}\n`);
      return 1;
    }
    for (const line of r.report) err(`${line}\n`);
    injected += r.injected;
    // Untouched documents are re-emitted from their own syntax tree, keeping comments;
    // injected ones keep their document-level comment, their body is regenerated.
    if (r.injected) {
      type Commented = { commentBefore?: string | null; items?: { key?: { commentBefore?: string | null } }[] } | null;
      const c = doc.contents as Commented;
      const comment = c?.commentBefore ?? c?.items?.[0]?.key?.commentBefore;
      const node = doc.createNode(r.object);
      if (comment) node.commentBefore = comment;
      doc.contents = node as typeof doc.contents;
    }
    const text = doc.toString({ lineWidth: 0 });
    parts.push(text.replace(/^---[ \t]*\n/, ''));
  }
  out(parts.join('---\n'));
  err(`wren inject: ${injected} pod template(s) injected\n`);
  if (injected > 0 && !opts.trustBundlePem)
    err('wren inject: no --trust-bundle: WREN_TRUST_BUNDLE is empty, and the proxies refuse to start until it holds the mesh\'s root CA(s)\n');
  return 0;
}
