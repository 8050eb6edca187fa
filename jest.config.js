// Two suites: `unit` runs offline in seconds (Pulumi mocks, no nix, no ssh);
// `integration` drives the real scripts against a real SSH target and a real
// Nix store (needs root, nix-bin and openssh-server; see README).
const tsJest = { "^.+\\.ts$": ["ts-jest", { diagnostics: { warnOnly: false } }] };

module.exports = {
  projects: [
    {
      displayName: "unit",
      testEnvironment: "node",
      transform: tsJest,
      testMatch: ["<rootDir>/tests/unit/**/*.test.ts"],
    },
    {
      displayName: "integration",
      testEnvironment: "node",
      transform: tsJest,
      testMatch: ["<rootDir>/tests/integration/**/*.test.ts"],
    },
  ],
};
