import { ConfigError, num, obj, record, str } from './schema.js';

const shape = obj({ port: num({ default: 80 }), name: str({ default: '' }) });

describe('obj: unknown fields', () => {
  test('a misspelt field is an error naming its path and the known fields', () => {
    expect(() => shape({ prot: 8080 }, 'listener')).toThrow(new ConfigError('listener.prot', 'unknown field (expected one of port, name)'));
  });

  // Object.prototype's members are no fields of a shape: `k in shape` took them for known
  // ones and the value was dropped without a word.
  test.each(['constructor', 'toString', 'hasOwnProperty', '__proto__'])('a field named %s is unknown, not silently ignored', (k) => {
    expect(() => shape(JSON.parse(`{"${k}": 5}`), 'listener')).toThrow(`listener.${k}: unknown field (expected one of port, name)`);
  });

  test('known fields parse, missing ones take their defaults', () => {
    expect(shape({ port: 8080 }, 'listener')).toEqual({ port: 8080, name: '' });
  });
});

describe('record', () => {
  const labels = record(str());
  const nested = record(obj({ port: num() }));

  test('every entry is parsed with its path', () => {
    expect(labels({ app: 'web' }, 'labels')).toEqual({ app: 'web' });
    expect(() => labels({ app: 5 }, 'labels')).toThrow('labels.app: expected a string, got 5');
  });

  // JSON.parse and YAML make `__proto__` an own key; assigned, it hit the prototype setter:
  // a string was dropped, an object became the map's prototype.
  test('a __proto__ key is an own entry like any other', () => {
    const l = labels(JSON.parse('{"__proto__": "x", "app": "web"}'), 'labels');
    expect(Object.hasOwn(l, '__proto__')).toBe(true);
    expect(Object.keys(l)).toEqual(['__proto__', 'app']);
    const n = nested(JSON.parse('{"__proto__": {"port": 1}}'), 'ports');
    expect(Object.getPrototypeOf(n)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(n, '__proto__')?.value).toEqual({ port: 1 });
    expect((n as Record<string, unknown>).port).toBeUndefined();
  });
});
