// Three suites: `unit` runs offline in seconds (Pulumi mocks, no nix, no ssh);
// `integration` drives the real scripts against a real SSH target and a real
// Nix store (needs root, nix-bin and openssh-server; see README); `e2e` drives
// the real Pulumi engine (scripts/build-engine.sh) with stand-in providers whose
// servers are real SSH targets.
// Type checking is `npx tsc --noEmit`; jest only transpiles, which keeps the unit suite fast.
// The key libraries (src/keys.ts) ship only ES modules. Node 22 loads them with require() by
// itself (the Pulumi program does); Jest's own module loader does not, so they are transpiled
// to CommonJS like the tests.
const esmOnly = ["@noble/curves", "@noble/hashes", "@scure/base", "micro-packed"];
const tsJest = {
    "^.+\\.ts$": "ts-jest",
    "^.+\\.js$": ["ts-jest", { tsconfig: { allowJs: true, module: "commonjs", target: "ES2022", isolatedModules: true } }],
};
const transformIgnorePatterns = [`/node_modules/(?!(${esmOnly.join("|")})/)`];

module.exports = {
  // A global option (a project's own is ignored): the unit tests' hooks and tests each run in well
  // under a second alone; on a machine busy with two suites' targets, a mocked program run took more
  // than Jest's default 5 s. The integration and e2e files set their own (jest.setTimeout).
  testTimeout: 30_000,
  projects: [
    {
      displayName: "unit",
      testEnvironment: "node",
      transform: tsJest,
      transformIgnorePatterns,
      testMatch: ["<rootDir>/tests/unit/**/*.test.ts"],
    },
    {
      displayName: "integration",
      testEnvironment: "node",
      transform: tsJest,
      transformIgnorePatterns,
      testMatch: ["<rootDir>/tests/integration/**/*.test.ts"],
      setupFiles: ["<rootDir>/tests/setupNix.ts"],
    },
    {
      displayName: "e2e",
      testEnvironment: "node",
      transform: tsJest,
      transformIgnorePatterns,
      testMatch: ["<rootDir>/tests/e2e/**/*.test.ts"],
      setupFiles: ["<rootDir>/tests/setupNix.ts"],
    },
  ],
};
