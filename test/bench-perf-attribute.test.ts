import { attribute } from '../bench/perf-attribute.js';

test('each sample is charged to its nearest JavaScript frame and counted by the kind of its leaf', () => {
  const script = [
    // A builtin called from the parser: the parser's file, a builtin leaf.
    '\t    16b7108 Builtins_KeyedLoadIC_Megamorphic',
    "\t    7fcc581e53b6 JS:*'field file:///work/main/dist/proxy/h1/parser.js:355:10",
    '\t    a22df1 v8::internal::Execution::Call',
    '',
    // Kernel time under a socket write from node's stream code.
    '\t    ffffffff8a1b2c3d _raw_spin_unlock_irqrestore',
    '\t    1619332 uv__write',
    "\t    7fcc581b73f9 JS:*'writevGeneric node:internal/stream_base_commons:120:22",
    '',
    // JIT code itself.
    "\t    7fcc581e53b6 JS:*'field file:///work/main/dist/proxy/h1/parser.js:355:10",
    '',
    // No JavaScript on the stack: the GC.
    '\t    9a0b1c v8::internal::Scavenger::ScavengeObject',
    '\t    4d1215 node::Start',
    '',
  ].join('\n');
  const a = attribute(script);
  expect(a.total).toBe(4);
  expect(Object.fromEntries(a.files)).toEqual({ 'parser.js': 2, 'node:internal/stream_base_commons': 1, '(no JS frame) v8::internal::Scavenger::ScavengeObject': 1 });
  expect(Object.fromEntries(a.kinds)).toEqual({ 'V8 builtins': 1, kernel: 1, 'JavaScript (JIT code)': 1, GC: 1 });
});
