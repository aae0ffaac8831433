/* Placeholder: web/build.mjs writes the real bundle here. */
