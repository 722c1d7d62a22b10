// The chat backend as a CDK stack: ../template.yaml itself, included (aws-cdk-lib's
// cloudformation-include), with each function's code taken from `cargo lambda build`. The
// template is the one source of the stack; this file adds only what CDK users compose on top
// (see `ChatStack.template` and infra/README.md).

import * as fs from "node:fs";
import * as path from "node:path";

import { CfnOutput, Fn, Stack, StackProps } from "aws-cdk-lib";
import { Asset } from "aws-cdk-lib/aws-s3-assets";
import { CfnInclude } from "aws-cdk-lib/cloudformation-include";
import { Construct } from "constructs";
import { CollectionTag, parse, ScalarTag } from "yaml";

export interface ChatStackProps extends StackProps {
  /** Where `cargo lambda build --release --arm64` put the binaries: `<lambdaDir>/<binary>/bootstrap`. */
  readonly lambdaDir: string;
  /** The SAM template to deploy; `../template.yaml` unless given. */
  readonly templateFile?: string;
}

/**
 * Outputs whose value names a resource the SAM transform creates (`<Function>Url` from a
 * function's `FunctionUrlConfig`). cloudformation-include resolves references before the
 * transform runs, so it cannot find them; they are added back as outputs of the stack.
 */
const TRANSFORM_CREATED = /^[A-Za-z0-9]+Url$/;

const SAM = "AWS::Serverless::";
const SAM_FUNCTION = "AWS::Serverless::Function";

export class ChatStack extends Stack {
  /** The included template: `getResource("MessagesFunction")`, `getParameter("LlmModel")`, … */
  readonly template: CfnInclude;

  constructor(scope: Construct, id: string, props: ChatStackProps) {
    super(scope, id, props);
    const templateFile = props.templateFile ?? path.join(__dirname, "..", "..", "..", "template.yaml");
    const document = readTemplate(templateFile);
    const deferred = deferTransformOutputs(document);
    const included = path.join(fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "chat-template-")), "template.json");
    fs.writeFileSync(included, JSON.stringify(document));
    const serverless = Object.keys(document.Resources).filter((id) => document.Resources[id].Type.startsWith(SAM));
    // SAM's resources pass through as written: aws-cdk-lib's model of them lags SAM (it rejects
    // a function URL's `Cors` and drops an HTTP API's `CorsConfiguration`), and nothing here
    // needs their typed form.
    this.template = new CfnInclude(this, "Template", { templateFile: included, dehydratedResources: serverless });
    for (const logicalId of serverless) {
      // A dehydrated resource would otherwise get a path-derived id; keep the template's.
      this.template.getResource(logicalId).overrideLogicalId(logicalId);
    }
    const functions = Object.entries(document.Resources).filter(([, resource]) => resource.Type === SAM_FUNCTION);
    for (const [logicalId, resource] of functions) {
      const binary = resource.Metadata?.BuildProperties?.Binary;
      if (typeof binary !== "string") throw new Error(`${logicalId}: Metadata.BuildProperties.Binary names no binary`);
      const code = new Asset(this, `${logicalId}Code`, { path: bootstrapDir(props.lambdaDir, binary) });
      this.template.getResource(logicalId).addPropertyOverride("CodeUri", {
        Bucket: code.s3BucketName,
        Key: code.s3ObjectKey,
      });
    }
    for (const [name, output] of Object.entries(deferred)) {
      const [resource, attribute] = output.Value["Fn::GetAtt"];
      new CfnOutput(this, name, { description: output.Description, value: Fn.getAtt(resource, attribute).toString() });
    }
  }
}

interface Template {
  Resources: Record<string, { Type: string; Metadata?: { BuildProperties?: { Binary?: unknown } } }>;
  Outputs?: Record<string, { Description?: string; Value: Record<string, unknown> }>;
}

/** The deferred outputs: removed from `document`, returned by name with a two-part GetAtt. */
function deferTransformOutputs(document: Template): Record<string, { Description?: string; Value: { "Fn::GetAtt": [string, string] } }> {
  const deferred: Record<string, { Description?: string; Value: { "Fn::GetAtt": [string, string] } }> = {};
  for (const [name, output] of Object.entries(document.Outputs ?? {})) {
    const getAtt = output.Value["Fn::GetAtt"];
    const parts = typeof getAtt === "string" ? getAtt.split(".") : getAtt;
    if (!Array.isArray(parts) || parts.length !== 2 || !TRANSFORM_CREATED.test(String(parts[0]))) continue;
    if (document.Resources[String(parts[0])]) continue;
    deferred[name] = { Description: output.Description, Value: { "Fn::GetAtt": [String(parts[0]), String(parts[1])] } };
    delete document.Outputs?.[name];
  }
  return deferred;
}

/** The directory holding `<binary>/bootstrap`, or the build command to run when it is missing. */
function bootstrapDir(lambdaDir: string, binary: string): string {
  const dir = path.join(lambdaDir, binary);
  if (!fs.existsSync(path.join(dir, "bootstrap"))) {
    throw new Error(
      `${dir}/bootstrap is missing: run \`cargo lambda build --release --arm64 --bin ${binary}\` ` +
        "from the repository root (or pass -c lambdaDir=<dir>)",
    );
  }
  return dir;
}

/** CloudFormation's short-form tags (`!Ref X`, `!GetAtt A.B`, `!Sub …`) as their long forms. */
const SHORT_FORMS = ["Ref", "Condition", "GetAtt", "Sub", "Join", "If", "Equals", "Not", "And", "Or", "Select", "Split",
  "FindInMap", "Base64", "ImportValue", "GetAZs", "Cidr"];

function readTemplate(file: string): Template {
  const longName = (tag: string) => (tag === "Ref" || tag === "Condition" ? tag : `Fn::${tag}`);
  const customTags = SHORT_FORMS.flatMap((tag): (ScalarTag | CollectionTag)[] => [
    { tag: `!${tag}`, resolve: (value) => ({ [longName(tag)]: value }) },
    { tag: `!${tag}`, collection: "seq", resolve: (node) => ({ [longName(tag)]: node.toJSON() }) },
    { tag: `!${tag}`, collection: "map", resolve: (node) => ({ [longName(tag)]: node.toJSON() }) },
  ]);
  const document = parse(fs.readFileSync(file, "utf8"), { customTags }) as Template;
  return document;
}
