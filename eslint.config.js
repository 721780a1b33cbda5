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
  { files: ['src/lib/contract/**/*.ts'], rules: { '@typescript-eslint/no-redeclare': 'off' } }
]
