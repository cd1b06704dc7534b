#!/usr/bin/env node
// node tools/npm/validate-openapi.js FILE: validates an OpenAPI document
// with @apidevtools/swagger-parser (the OpenAPI schema, then the $refs and
// the rules the schema cannot state, e.g. unique operationIds and path
// parameters declared). Exit 0 and one line when valid; 1 and the reasons
// otherwise.
'use strict';
const SwaggerParser = require('@apidevtools/swagger-parser');

const file = process.argv[2];
if (!file) {
  console.error('usage: validate-openapi.js FILE');
  process.exit(2);
}
SwaggerParser.validate(file)
  .then((api) => {
    const operations = Object.values(api.paths)
      .reduce((n, item) => n + Object.keys(item).filter((k) => k !== 'parameters').length, 0);
    console.log(`swagger-parser: ${file} is valid OpenAPI ${api.openapi} ` +
                `("${api.info.title}" ${api.info.version}): ` +
                `${Object.keys(api.paths).length} paths, ${operations} operations, ` +
                `${Object.keys(api.components.schemas).length} schemas`);
  })
  .catch((error) => {
    console.error(`swagger-parser: ${file} is NOT valid: ${error.message}`);
    process.exit(1);
  });
