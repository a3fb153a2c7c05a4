// graphql-codegen for the console: its documents (src/**/*.ts, *.tsx) typed against the
// checked-in schema.graphql, with the scalar mapping of the repository's codegen.ts (the
// one every TypeScript client of ordergraph copies). `documentMode: 'string'` makes each
// `graphql(...)` a typed string, so the page ships no GraphQL parser: the server parses.

import { scalars } from '../codegen.ts';

const repo = (path: string) => new URL(path, import.meta.url).pathname;

const config = {
  overwrite: true,
  emitLegacyCommonJSImports: false,
  schema: repo('../schema.graphql'),
  documents: [repo('src/**/*.ts'), repo('src/**/*.tsx'), `!${repo('src/gql/**')}`],
  ignoreNoDocuments: false,
  generates: {
    [repo('src/gql/')]: {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        scalars,
        strictScalars: true,
        enumsAsTypes: true,
        useTypeImports: true,
        documentMode: 'string',
      },
    },
  },
};

export default config;
