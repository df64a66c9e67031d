import { parsePromText } from './prom-text.js';

describe('parsePromText', () => {
  test('reads the named samples with their labels, unescaping values', () => {
    const text = [
      '# HELP a_total help',
      '# TYPE a_total counter',
      'a_total{x="1",y="q\\"uo\\\\te\\nd"} 3',
      'a_total 4',
      'b_total{x="2"} 9',
      'h_bucket{le="+Inf",x="1"} 5',
    ].join('\n');
    expect(parsePromText(text, new Set(['a_total', 'h_bucket']))).toEqual([
      { name: 'a_total', labels: { x: '1', y: 'q"uo\\te\nd' }, value: 3 },
      { name: 'a_total', labels: {}, value: 4 },
      { name: 'h_bucket', labels: { le: '+Inf', x: '1' }, value: 5 },
    ]);
  });

  test('a malformed line is an error naming it', () => {
    expect(() => parsePromText('a_total{x="1} 3', new Set(['a_total']))).toThrow(/malformed metrics line: a_total/);
  });
});
