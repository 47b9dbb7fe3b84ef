package fly

import (
	"fmt"
	"regexp"

	"github.com/hashicorp/hcl/v2"
)

// requiredExamples are what a missing required attribute looks like when
// written, for the diagnostic's fix.
var requiredExamples = map[string]string{
	"host":           `host = "gitlab.com"`,
	"token":          `token = "vault://ci/gitlab/api_token"`,
	"webhook_secret": `webhook_secret = "vault://ci/gitlab/webhook_secret"`,
	"upstream":       `upstream = "https://registry-1.docker.io"`,
	"kind":           `kind = "nest_update"`,
	"schedule":       `schedule = "0 3 * * *"`,
	"cloud":          `cloud = "yandex"`,
}

// hclMissingArgument reads the name out of HCL's "Missing required
// argument" detail.
var hclMissingArgument = regexp.MustCompile(`^The argument "([^"]+)" is required`)

// blockContentOf is a block's content (blockContent), with HCL's bare
// diagnostic for a missing required attribute (whose subject is the empty
// range before the closing brace, so nothing is underlined) turned into one
// that points at the block and says what to add.
func blockContentOf(b *hcl.Block, schema *hcl.BodySchema) (*hcl.BodyContent, hcl.Diagnostics) {
	content, diags := blockContent(b.Body, schema)
	for _, d := range diags {
		if d.Summary != "Missing required argument" {
			continue
		}
		m := hclMissingArgument.FindStringSubmatch(d.Detail)
		if m == nil {
			continue
		}
		example := requiredExamples[m[1]]
		if example == "" {
			example = m[1] + " = ..."
		}
		d.Summary = fmt.Sprintf("Missing %s", m[1])
		d.Detail = fmt.Sprintf("A %s block needs %q. Add it inside the block, such as:\n  %s", b.Type, m[1], example)
		d.Subject = b.DefRange.Ptr()
	}
	return content, diags
}

// hasUnsupportedBlock tells whether diags report a block the schema does
// not know (a misspelt one, such as "runer").
func hasUnsupportedBlock(diags hcl.Diagnostics) bool {
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary == "Unsupported block type" {
			return true
		}
	}
	return false
}
