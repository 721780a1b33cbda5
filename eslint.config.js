import globals from 'globals'
import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'bench/results/**', 'coverage/**']
  }),
  // The dashboard's script runs in the browser, as plain JavaScript with no build step.
  { files: ['public/**/*.js'], languageOptions: { globals: globals.browser, sourceType: 'script' } },
  // The TypeBox idiom: a schema and the type Static<> derives from it share one name.
  { files: ['src/lib/contract/**/*.ts'], rules: { '@typescript-eslint/no-redeclare': 'off' } },
  // The load benchmarks and the mocks reach the service as its users and upstreams do: over HTTP (bench/ spawns the
  // built server) and through the contract. A benchmark that needs an internal is a unit benchmark, beside the tests.
  {
    files: ['bench/**/*.ts', 'mock-services/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          regex: '(^|/)src/(?!lib/contract/)',
          message: 'bench/ and mock-services/ import from src only through src/lib/contract; benchmark an internal in test/**/*.bench.ts (npm run bench:unit).'
        }]
      }]
    }
  }
]
