/**
 * @peony/forwarder: placeholder. Nothing is implemented yet (see README.md); the package exists so
 * the workspace layout is final and the name is reserved.
 */
export {}
