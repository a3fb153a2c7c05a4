// graphql-codegen's configuration for TypeScript clients of ordergraph: the schema is the
// checked-in schema.graphql (what the server serves: a drift test keeps them equal), and
// every custom scalar is mapped to the TypeScript type of its JSON form, as its
// description in schema.graphql says. `strictScalars` makes a scalar added to the schema
// without a mapping here fail the generation, instead of becoming `any`.
//
// The sample client in examples/typed-client is generated from it (codegen runs there, where
// its preset is installed; the paths below are the repository root's, wherever it runs):
//
//   cd examples/typed-client && npm run codegen
//
// For your own app, copy `scalars` (and `documents`/`generates` for your paths).

/** The TypeScript type of each custom scalar, as JSON carries it. */
export const scalars = {
  /** RFC 3339, e.g. "2026-11-26T17:53:26.123456+00:00": parse with `new Date(s)`. */
  DateTime: 'string',
  /** Money, exactly 2 decimal places, e.g. "19.99": keep it a string (or a decimal library), never a float. */
  Decimal: 'string',
  /** Any JSON value: an event's data or metadata, a view's row. */
  JSON: 'unknown',
  /** An event's place in the log, digits, e.g. "1042" (may exceed 2^53): compare with BigInt. */
  Position: 'string',
  /** A UUID in hyphenated form. */
  UUID: 'string',
};

/** A path in the repository, wherever codegen runs. */
const repo = (path: string) => new URL(path, import.meta.url).pathname;

// No import of '@graphql-codegen/cli' for its `CodegenConfig` type: this file lives at the
// repository's root, where no node_modules is installed.
const config = {
  overwrite: true,
  // `import './graphql.js'`: the generated files are ES modules, as Node runs them.
  emitLegacyCommonJSImports: false,
  schema: repo('schema.graphql'),
  documents: [repo('examples/typed-client/src/**/*.ts'), `!${repo('examples/typed-client/src/gql/**')}`],
  ignoreNoDocuments: false,
  generates: {
    [repo('examples/typed-client/src/gql/')]: {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        scalars,
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
